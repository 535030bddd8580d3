"""The model catalog (`VBP_MODELS_FILE`): every deployment the OpenAI door may run a batch on, by model."""
