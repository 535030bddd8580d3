# From the repository's folder, with VBP_URL and VBP_KEY set (README, Quickstart):
#     .venv/bin/python examples/genai_batch.py

import os
import time

import google.oauth2.credentials
from google import genai
from google.genai import types

client = genai.Client(
    vertexai=True, project="your-project", location="us-central1",
    credentials=google.oauth2.credentials.Credentials(token=os.environ["VBP_KEY"]),  # the proxy key, not Google's
    http_options=types.HttpOptions(base_url=os.environ["VBP_URL"]),  # v1beta1 by default; api_version="v1" works
)
job = client.batches.create(model="gemini-2.5-flash", src="gs://my-bucket/team-a/input.jsonl",
                            config=types.CreateBatchJobConfig(dest="gs://my-bucket/team-a/genai-output/"))
print(job.name, job.state)
while not job.done:  # about 8 s on the emulator; minutes to hours on Vertex
    time.sleep(2)
    job = client.batches.get(name=job.name)
print(job.name, job.state)
print(len(list(client.batches.list(config=types.ListBatchJobsConfig(page_size=10)))), "jobs of team-a")
