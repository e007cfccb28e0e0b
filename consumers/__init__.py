"""Built-in consumers: cache invalidation, webhooks, batch writes to DynamoDB.

Each module exposes ``build(options, context)``, registered as a ``dsp.consumers`` entry
point. Consumers use ``processor``'s public API only.
"""
