"""What a CI job runs: ``recipe`` (``edgekit run RECIPE.toml``) and ``gate`` (rules that fail a
build; ``gate_output`` prints and stores, ``gate_refusals`` says which figures a rule may not use)."""
