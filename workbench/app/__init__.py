"""Stage 7, what users touch: the CLI, the session helpers notebooks use, plots and the JupyterLab widgets. Holds no
numerics: every number comes from the stages below."""
