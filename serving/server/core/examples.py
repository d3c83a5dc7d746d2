"""Classify, Regress and MultiInference on one servable (classifier.cc, regressor.cc,
multi_inference.cc): tf.Example inputs, signature checks and result conversion as TF Serving.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, input_pb2, regression_pb2

from serving.codec import dtype_enum
from serving.server.core import errors
from serving.server.core.inference import CLASSIFY_METHOD, REGRESS_METHOD, fill_model_spec
from serving.server.core.servable import DEFAULT_SIGNATURE, Servable


def serialized_examples(model_input: input_pb2.Input) -> np.ndarray:
    """Return the serialized tf.Examples of an Input, context prepended as TF Serving does."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        records = [example.SerializeToString() for example in model_input.example_list.examples]
    elif kind == "example_list_with_context":
        listed = model_input.example_list_with_context
        context = listed.context.SerializeToString()
        records = [context + example.SerializeToString() for example in listed.examples]
    else:
        records = []
    if not records:
        raise errors.invalid_argument("Input is empty.")
    batch = np.empty(len(records), dtype=object)
    batch[:] = records
    return batch


def _named_signature(servable: Servable, signature_name: str):
    resolved = signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(resolved)
    if signature is None:
        raise errors.invalid_argument(f"No signature was found with the name: {resolved}")
    return resolved, signature


def _check_method_and_input(signature, method_name: str, kind: str, method_check: bool) -> None:
    """Raise the first two errors PreProcessClassification and PreProcessRegression share."""
    if method_check and signature.method_name != method_name:
        raise errors.invalid_argument(
            f"Expected {kind} signature method_name to be {method_name}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise errors.invalid_argument("Expected one input Tensor.")


def check_classification_signature(signature, method_check: bool) -> None:
    """Raise TF Serving's PreProcessClassification errors for an unusable signature."""
    _check_method_and_input(signature, CLASSIFY_METHOD, "classification", method_check)
    if len(signature.outputs) not in (1, 2):
        raise errors.invalid_argument(
            f"Expected one or two output Tensors, found {len(signature.outputs)}"
        )
    if "inputs" not in signature.inputs:
        raise errors.invalid_argument(f"No classification inputs found in SignatureDef: {signature}")
    if "classes" not in signature.outputs and "scores" not in signature.outputs:
        raise errors.invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" or '
            f'"scores". Signature was: {signature}'
        )


def check_regression_signature(signature, method_check: bool) -> None:
    """Raise TF Serving's PreProcessRegression errors for an unusable signature."""
    _check_method_and_input(signature, REGRESS_METHOD, "regression", method_check)
    if len(signature.outputs) != 1:
        raise errors.invalid_argument("Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise errors.invalid_argument(f"No regression inputs found in SignatureDef: {signature}")
    if "outputs" not in signature.outputs:
        raise errors.invalid_argument(f"No regression outputs found in SignatureDef: {signature}")


def _data_type_name(array: np.ndarray) -> str:
    """Return TF's DataType_Name for an array's dtype, e.g. 'DT_DOUBLE'."""
    return types_pb2.DataType.Name(dtype_enum(array))


def classification_result(outputs: Mapping[str, np.ndarray], num_examples: int, result) -> None:
    """Fill a ClassificationResult from `classes`/`scores` outputs, with TF's checks."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for name, tensor, kind in (("classes", classes, "O"), ("scores", scores, "f")):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise errors.invalid_argument(
                "Expected Tensor shape: [batch_size num_classes] but got "
                f"{errors.shape_string(tensor.shape)}"
            )
        expected_type = "DT_STRING" if kind == "O" else "DT_FLOAT"
        if (kind == "O" and tensor.dtype != object) or (kind == "f" and tensor.dtype != np.float32):
            raise errors.invalid_argument(
                f"Expected {name} Tensor of {expected_type}. Got: {_data_type_name(tensor)}"
            )
        if tensor.shape[0] != num_examples:
            raise errors.invalid_argument(
                f"Expected {name} output batch size of {num_examples}. Got: {tensor.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise errors.invalid_argument(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    labels = classes.tolist() if classes is not None else None
    values = scores.tolist() if scores is not None else None
    for row in range(num_examples):
        classifications = result.classifications.add()
        for column in range(num_classes):
            entry = classifications.classes.add()
            if labels is not None:
                entry.label = labels[row][column].decode("utf-8", "surrogateescape")
            if values is not None:
                entry.score = values[row][column]


def regression_result(outputs: Mapping[str, np.ndarray], num_examples: int, result) -> None:
    """Fill a RegressionResult from the `outputs` tensor, with TF's checks."""
    tensor = outputs["outputs"]
    if not (tensor.ndim == 1 or (tensor.ndim == 2 and tensor.shape[1] == 1)):
        raise errors.invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{errors.shape_string(tensor.shape)}"
        )
    if tensor.shape[0] != num_examples:
        raise errors.invalid_argument(
            f"Input batch size did not match output batch size: {num_examples} vs. {tensor.shape[0]}"
        )
    if tensor.dtype != np.float32:
        raise errors.invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {_data_type_name(tensor)}")
    for value in tensor.ravel().tolist():
        result.regressions.add().value = value


def classify(servable: Servable, request, *, method_check: bool = False):
    """Return the ClassificationResponse for a ClassificationRequest (RunClassify)."""
    return _run_single_task(servable, request, classification_pb2.ClassificationResponse(),
                            check_classification_signature, ("classes", "scores"),
                            classification_result, method_check)


def regress(servable: Servable, request, *, method_check: bool = False):
    """Return the RegressionResponse for a RegressionRequest (RunRegress)."""
    return _run_single_task(servable, request, regression_pb2.RegressionResponse(),
                            check_regression_signature, ("outputs",), regression_result, method_check)


def _run_single_task(servable: Servable, request, response, check_signature, output_names,
                     fill_result, method_check: bool):
    """Run a Classify or Regress request: check the signature, run the examples, fill `response`."""
    resolved, signature = _named_signature(servable, request.model_spec.signature_name)
    check_signature(signature, method_check)
    examples = serialized_examples(request.input)
    outputs = servable.run(resolved, {"inputs": examples})
    outputs = {key: value for key, value in outputs.items() if key in output_names}
    fill_model_spec(response.model_spec, request.model_spec.name,
                    request.model_spec.signature_name, servable.version)
    fill_result(outputs, len(examples), response.result)
    return response


def multi_inference(servable: Servable, request, *, method_check: bool = False):
    """Return the MultiInferenceResponse: every task run on the same examples."""
    model_name, seen, tasks = "", set(), []
    for task in request.tasks:
        if not task.model_spec.name:
            raise errors.invalid_argument("Found ModelSpec with an empty model name.")
        if model_name and task.model_spec.name != model_name:
            raise errors.invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        model_name = task.model_spec.name
        resolved = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if resolved in seen:
            raise errors.invalid_argument(f"Duplicate evaluation of signature: {resolved}")
        seen.add(resolved)
        signature = servable.signature_defs.get(resolved)
        if signature is None:
            raise errors.invalid_argument(f"Requested signature not found in model graph: {resolved}")
        if task.method_name == CLASSIFY_METHOD:
            check_classification_signature(signature, method_check)
        elif task.method_name == REGRESS_METHOD:
            check_regression_signature(signature, method_check)
        else:
            raise errors.unimplemented(f"Unsupported signature method_name: {task.method_name}")
        tasks.append((task, resolved))
    examples = serialized_examples(request.input)
    response = inference_pb2.MultiInferenceResponse()
    for task, resolved in tasks:
        outputs = servable.run(resolved, {"inputs": examples})
        result = response.results.add()
        if task.method_name == CLASSIFY_METHOD:
            classification_result(outputs, len(examples), result.classification_result)
        else:
            regression_result(outputs, len(examples), result.regression_result)
        fill_model_spec(result.model_spec, task.model_spec.name,
                        task.model_spec.signature_name, servable.version)
    return response
