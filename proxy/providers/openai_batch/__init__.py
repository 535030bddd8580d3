"""OpenAI's and Azure OpenAI's Files + Batches APIs behind the provider seam (`proxy.providers.base`)."""
