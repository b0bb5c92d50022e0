"""The biasvar command line (installed as the package ``biasvar_cli``; console script ``biasvar``)."""
