# One image for every breachwatch service; the command picks the service
# (`breachwatch serve ingest | router | evaluator | dispatcher`).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install -r requirements.lock
COPY schemas ./schemas
COPY geo ./geo
COPY services ./services
COPY deploy ./deploy
COPY bench ./bench
COPY simulator ./simulator
RUN pip install --no-deps . && useradd --system --uid 10001 breachwatch
USER breachwatch
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
ENTRYPOINT ["breachwatch"]
CMD ["serve", "all"]
