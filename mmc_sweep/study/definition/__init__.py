"""The study file and its checks: spec, overrides, run options, preflight, the study folder's study.yaml."""
