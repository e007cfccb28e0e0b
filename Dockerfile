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
RUN pip install --no-cache-dir --no-index --find-links=/wheels "dynamodb-stream-processor==${VERSION}" \
 && rm -rf /wheels \
 && useradd --system --uid 10001 --no-create-home dsp
USER 10001
# Configuration: DSP_ variables, and/or a TOML file mounted where DSP_CONFIG points; secrets
# as DSP_..._FILE pointing at mounted secret files. Health and metrics on 9100.
ENV DSP_OBSERVABILITY__METRICS_PORT=9100 \
    DSP_LOGGING__FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 9100
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:' + os.environ['DSP_OBSERVABILITY__METRICS_PORT'] + '/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["dsp", "run"]
