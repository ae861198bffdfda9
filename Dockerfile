FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY commands commands
COPY projections projections
COPY api api
COPY infra infra
RUN pip install --no-cache-dir .
EXPOSE 8080
CMD ["gbserver", "serve", "--host", "0.0.0.0", "--port", "8080"]
