"""The pyfunc entry point MLflow runs when it loads a logged churn model ("models from code": no pickle)."""

from mlflow.models import set_model

from training.register import ChurnPyfunc

set_model(ChurnPyfunc())
