# syntax=docker/dockerfile:1
# Build the wheel in one stage, install it alone in a slim runtime stage. The build stage is
# the full image: it has the C compiler for the native image walk (ADR 0020), which the wheel
# then carries compiled; the slim runtime stage needs none.
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY processor ./processor
COPY consumers ./consumers
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/dynamodb_stream_processor-*.whl

FROM python:3.11-slim
ARG VERSION=0.1.0
COPY --from=build /wheels /wheels
# /var/lib/dsp: the one place the worker writes (the dead-letter file, or SQS's overflow file
# for letters too large for a message). Owned by the runtime user, declared a volume: mount a
# persistent volume there, or letters are lost with the container. It is also the working
# directory, so the default dead-letter path (dead-letter.jsonl, relative) lands there and not
# in / (which uid 10001 cannot write); an ENV would override the TOML file, so none is set.
RUN pip install --no-cache-dir --no-index --find-links=/wheels "dynamodb-stream-processor==${VERSION}" \
 && rm -rf /wheels \
 && useradd --system --uid 10001 --no-create-home --home-dir /var/lib/dsp dsp \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/dsp
WORKDIR /var/lib/dsp
VOLUME ["/var/lib/dsp"]
USER 10001
# Configuration: DSP_ variables, and/or a TOML file mounted where DSP_CONFIG points; secrets
# as DSP_..._FILE pointing at mounted secret files. Health and metrics on 9100. `dsp run`
# stops at once, in one line, if the dead-letter file cannot be written.
ENV DSP_OBSERVABILITY__METRICS_PORT=9100 \
    DSP_LOGGING__FORMAT=json \
    HOME=/var/lib/dsp \
    PYTHONUNBUFFERED=1
EXPOSE 9100
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:' + os.environ['DSP_OBSERVABILITY__METRICS_PORT'] + '/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["dsp", "run"]
