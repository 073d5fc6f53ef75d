"""Re-export of :mod:`features.btyd` (the BG/NBD models moved there: they are features, not training)."""

from features.btyd import (
    PARAM_NAMES,
    BetaGeoModel,
    BTYDParams,
    CountBy,
    Variant,
    _expected_given_alive_quadrature,
    btyd_feature_names,
    btyd_features,
    rfm_summary,
    simulate,
)

__all__ = [
    "PARAM_NAMES",
    "BTYDParams",
    "BetaGeoModel",
    "CountBy",
    "Variant",
    "_expected_given_alive_quadrature",
    "btyd_feature_names",
    "btyd_features",
    "rfm_summary",
    "simulate",
]
