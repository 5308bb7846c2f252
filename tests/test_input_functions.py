"""The workflow's input functions, as Snakemake reads them for every job it makes."""

import inspect

from snakemake.common import get_function_params, get_input_function_aux_params

from image_batch.common.input_functions import input_function


def test_snakemake_gets_the_parameters_without_reading_the_signature_again(monkeypatch):
    plain = input_function(lambda wildcards: [])
    grouped = input_function(lambda wildcards, groupid: [])
    read = []
    signature = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda *args, **kwargs: read.append(args) or signature(*args, **kwargs))

    assert list(get_function_params(plain)) == ["wildcards"]
    assert "groupid" not in get_function_params(plain)
    assert get_input_function_aux_params(plain, {"groupid": "g", "input": []}) == {}
    assert "groupid" in get_function_params(grouped)
    assert get_input_function_aux_params(grouped, {"groupid": "g", "input": []}) == {"groupid": "g"}
    assert read == []
    assert plain({"folder": "x"}) == []
