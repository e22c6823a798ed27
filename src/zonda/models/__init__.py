"""The zonda model family: GraphCast/AIFS-class encoder-processor-decoder networks.

* :func:`build_network` - grid -> mesh encoder, ``gnn`` / ``graph_transformer``
  / ``transformer`` processor, mesh -> grid decoder (``ModelParams``).
* :class:`Normalisation` - constants from the statistics stage.
* :class:`Forecaster` - residual 6-hour forecaster on normalised tendencies,
  with one autoregressive step loop (:meth:`Forecaster.rollout_steps`) behind
  :meth:`Forecaster.rollout` and the training loss.
* :func:`summary` / :func:`summary_dict` - parameter counts per component.
* :mod:`zonda.models.saved` - what a trained model is on disk (``weights.safetensors``, ``model.json``)
  and :func:`~zonda.models.saved.load_forecaster`, which evaluation and serving use without Lightning.
"""

from zonda.models.encode_process_decode import EncodeProcessDecode, build_network
from zonda.models.forecaster import Forecaster
from zonda.models.normalisation import Normalisation
from zonda.models.summary import summary, summary_dict

__all__ = ["EncodeProcessDecode", "Forecaster", "Normalisation", "build_network", "summary", "summary_dict"]
