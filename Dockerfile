# Salon in a container (not built in CI). Build: docker build -t salon .
# Run:  docker run -v salon-data:/var/lib/salon -p 5222:5222 -p 5269:5269 -p 5280:5280 salon
FROM python:3.11-slim
RUN useradd --system --home /var/lib/salon --create-home salon
WORKDIR /src
COPY pyproject.toml README.md ./
COPY salon ./salon
RUN pip install --no-cache-dir . && rm -rf /src
USER salon
WORKDIR /var/lib/salon
# 'salon init' writes a config and self-signed certificates on first start.
ENV SALON_CONFIG=/var/lib/salon/salon.toml
EXPOSE 5222 5223 5269 5270 5280 5281
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5280/metrics', timeout=4).status == 200 else 1)"
CMD ["sh", "-c", "salon init --config $SALON_CONFIG && salon serve --config $SALON_CONFIG"]
