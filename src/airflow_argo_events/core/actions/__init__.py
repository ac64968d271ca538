"""What a firing does (Argo's "triggers"): one module per kind, run by ``executor.ActionRunner``."""
