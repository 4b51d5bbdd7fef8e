"""The PromptForge Pulumi program (``pulumi up`` from this folder)."""
