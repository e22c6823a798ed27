"""MLflow models-from-code entry point of the zonda pyfunc (not meant to be imported).

:func:`zonda.registry.register.register_model` logs this file as the model's
code; ``mlflow.pyfunc.load_model`` runs it, which imports the installed zonda
package and hands MLflow a fresh :class:`ZondaForecastModel` whose
``load_context`` rebuilds the Forecaster from the bundled artifacts. Nothing
is unpickled.
"""

from mlflow.models import set_model

from zonda.registry.pyfunc_model import ZondaForecastModel

set_model(ZondaForecastModel())
