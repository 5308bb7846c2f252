# Image.Batch in a container. The code lives in /opt/image-batch; /app is where you mount your
# folder (sheet, optional config/ and .env), and where results/ is written:
#   docker build -t image-batch .
#   docker run --env-file .env -v "$(pwd)":/app image-batch input.csv
FROM python:3.11-slim
WORKDIR /opt/image-batch
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
WORKDIR /app
ENTRYPOINT ["python", "/opt/image-batch/main.py"]
