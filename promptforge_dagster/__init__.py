"""PromptForge: LLM batch jobs of any size, streamed through LiteLLM, orchestrated by Dagster."""

import os as _os

# LiteLLM fetches its model cost map from the internet at import unless told otherwise;
# set before any module of ours can import it.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
