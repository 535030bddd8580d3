# From the repository's folder, with VBP_URL and VBP_KEY set (README, Quickstart):
#     .venv/bin/python examples/aiplatform_batch.py

import os
import time

import google.oauth2.credentials
from google.api_core.client_options import ClientOptions
from google.cloud import aiplatform_v1

ENDED = {aiplatform_v1.JobState.JOB_STATE_SUCCEEDED, aiplatform_v1.JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
         aiplatform_v1.JobState.JOB_STATE_FAILED, aiplatform_v1.JobState.JOB_STATE_CANCELLED,
         aiplatform_v1.JobState.JOB_STATE_EXPIRED}

client = aiplatform_v1.JobServiceClient(
    transport="rest", client_options=ClientOptions(api_endpoint=os.environ["VBP_URL"]),
    credentials=google.oauth2.credentials.Credentials(token=os.environ["VBP_KEY"]),  # the proxy key, not Google's
)
parent = "projects/your-project/locations/us-central1"
job = client.create_batch_prediction_job(parent=parent, batch_prediction_job=aiplatform_v1.BatchPredictionJob(
    display_name="aiplatform-example",
    model=f"{parent}/publishers/google/models/gemini-2.5-flash-lite",
    input_config={"instances_format": "jsonl", "gcs_source": {"uris": ["gs://my-bucket/team-a/input.jsonl"]}},
    output_config={"predictions_format": "jsonl",
                   "gcs_destination": {"output_uri_prefix": "gs://my-bucket/team-a/aiplatform-output/"}},
))
print(job.name, job.state.name)  # this client asks for enums as numbers; the proxy passes them through
while job.state not in ENDED:  # about 8 s on the emulator; minutes to hours on Vertex
    time.sleep(2)
    job = client.get_batch_prediction_job(name=job.name)
print(job.name, job.state.name)
