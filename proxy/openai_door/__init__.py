"""The OpenAI door: OpenAI's Files and Batches APIs, each batch run as a Vertex batch job."""
