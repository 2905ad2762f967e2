"""Run ginjax (the reference implementation) on cases from an .npz file; write its results to another .npz.

Usage (with the python of the ginjax environment, NOT the escnn one; this file imports neither escnn nor
torch): ``python ginjax_bridge.py INPUT.npz OUTPUT.npz``.

INPUT holds ``spec``: a JSON list of cases ``{"id", "op", "D", ...}``, and arrays named ``"<id>/<name>"``.
Parities in the spec are ginjax's (0 tensor, 1 pseudotensor). OUTPUT holds ``"<id>"`` (the result array)
and, for ops that return a parity, ``"<id>/parity"``; plus ``"operators/<D>"`` (ginjax's group, D=2, 3) and
``"versions"``.
If ``ESCNN_TENSOR_JAX_CACHE`` names a directory, JAX's persistent compilation cache is kept there.
"""
import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 where ginjax does not cast to float32 itself

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ginjax.geometric as geom  # noqa: E402

if os.environ.get("ESCNN_TENSOR_JAX_CACHE"):  # persistent XLA compilation cache (ginjax compiles per shape)
    jax.config.update("jax_compilation_cache_dir", os.environ["ESCNN_TENSOR_JAX_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _image(arrays, case, name="image", parity_key="parity"):
    return geom.GeometricImage(
        jnp.asarray(arrays[f"{case['id']}/{name}"]),
        case[parity_key],
        case["D"],
        is_torus=_tuple2(case.get("is_torus", True)),
    )


def _tuple2(x):
    """JSON lists back to the (nested) tuples jax.jit's static arguments need."""
    if isinstance(x, list):
        return tuple(_tuple2(v) for v in x)
    return x


def _vector_neuron(case, arrays):
    """ginjax.layers.VectorNeuronNonlinear with given weights on a MultiImage; outputs flattened, in key order.

    case["keys"]: [[k, ginjax parity, channels], ...]; arrays "<id>/x/<i>" (channels, spatial, tensor) and
    "<id>/W/<i>" (channels, channels) for every key but the true scalars.
    """
    import equinox as eqx
    from ginjax import layers

    keys = [((False,) * k, p) for k, p, _ in case["keys"]]
    sig = tuple((key, c) for key, (_, _, c) in zip(keys, case["keys"]))
    layer = layers.VectorNeuronNonlinear(sig, case["D"], eps=case["eps"], key=jax.random.PRNGKey(0))
    for i, key in enumerate(keys):
        if key != ((), 0):
            layer = eqx.tree_at(lambda m, key=key: m.weights[key], layer, jnp.asarray(arrays[f"{case['id']}/W/{i}"]))
    x = geom.MultiImage({key: jnp.asarray(arrays[f"{case['id']}/x/{i}"]) for i, key in enumerate(keys)}, case["D"])
    out = layer(x)
    return np.concatenate([np.asarray(out.data[key]).reshape(-1) for key in keys])


def _multi_image(arrays, case, name):
    """A ginjax MultiImage from case[name] = [[k, ginjax parity], ...] and arrays "<id>/<name>/<i>"."""
    return geom.MultiImage(
        {(k, p): jnp.asarray(arrays[f"{case['id']}/{name}/{i}"]) for i, (k, p) in enumerate(case[name])}, case["D"]
    )


def _blocks(multi_image, keys):
    """The blocks of keys [[k, ginjax parity], ...] flattened and concatenated, in that order."""
    return np.concatenate([np.asarray(multi_image[((False,) * k, p)]).reshape(-1) for k, p in keys])


MULTI_OPS = ("fconvolve", "fconvolve_contract", "contraction_indices", "batch_time_series", "scalar_layout",
             "get_component", "autoregressive_step", "multi_norm")


def _multi(case, arrays):
    """ginjax's functional API, MultiImage methods and time-series helpers (the ops of MULTI_OPS)."""
    op, D, cid = case["op"], case["D"], case["id"]
    if op in ("fconvolve", "fconvolve_contract"):
        f = geom.convolve if op == "fconvolve" else geom.convolve_contract
        # float32 in (the inputs are float32 values): ginjax casts the image, not the filter, to float32
        x, w = (jnp.asarray(arrays[f"{cid}/{n}"], dtype=jnp.float32) for n in ("x", "f"))
        out = f(D, x, w, _tuple2(case["is_torus"]),
                stride=_tuple2(case.get("stride", 1)), padding=case.get("padding"),
                rhs_dilation=_tuple2(case.get("dilation", 1)))
        return np.asarray(out)
    if op == "contraction_indices":
        idxs = geom.get_contraction_indices(case["initial_k"], case["final_k"], _tuple2(case["swappable"]))
        return np.asarray(sorted(tuple(tuple(int(v) for v in pair) for pair in c) for c in idxs)).reshape(len(idxs), -1)
    if op == "batch_time_series":
        import ginjax.data as gdata

        X, Y = gdata.batch_time_series(_multi_image(arrays, case, "dynamic"), _multi_image(arrays, case, "constant"),
                                       case["total"], case["past"], case["future"], case.get("skip", 0),
                                       case.get("delta_t", 1))
        return np.concatenate([_blocks(X, case["x_keys"]), _blocks(Y, case["y_keys"])])
    if op == "scalar_layout":
        return np.asarray(_multi_image(arrays, case, "mi").to_scalar_multi_image()[((), 0)])
    if op == "multi_norm":
        return np.asarray(_multi_image(arrays, case, "mi").norm()[((), 0)])
    if op == "get_component":
        comp = case["component"]
        comp = slice(*comp) if isinstance(comp, list) else comp
        return np.asarray(_multi_image(arrays, case, "mi").get_component(comp, case["future"])[((), 0)])
    if op == "autoregressive_step":
        from ginjax.ml import training

        const = {((False,) * k, p): n for k, p, n in case["constant"]}
        new = training.autoregressive_step(_multi_image(arrays, case, "x"), _multi_image(arrays, case, "y"),
                                           case["past"], const)
        return _blocks(new, case["x"])
    raise ValueError(f"unknown op {op!r}")


def run_case(case, arrays):
    op = case["op"]
    if op in MULTI_OPS:
        return _multi(case, arrays), None
    if op == "invariant_filters":
        ops = geom.make_all_operators(case["D"])
        filters = geom.get_unique_invariant_filters(case["M"], case["k"], case["parity"], case["D"], ops)
        shape = (case["M"],) * case["D"] + (case["D"],) * case["k"]
        data = np.stack([np.asarray(f.data) for f in filters]) if filters else np.zeros((0,) + shape)
        return data, None
    if op == "vector_neuron":
        return _vector_neuron(case, arrays), None
    img = _image(arrays, case)
    if op == "convolve":
        flt = _image(arrays, case, "filter", "filter_parity")
        out = img.convolve_with(
            flt,
            stride=_tuple2(case.get("stride", 1)),
            padding=_tuple2(case.get("padding")),
            rhs_dilation=_tuple2(case.get("dilation", 1)),
        )
    elif op == "mul":
        out = img * _image(arrays, case, "other", "other_parity")
    elif op == "contract":
        out = img.contract(*case["indices"])
    elif op == "multicontract":
        out = img.multicontract(_tuple2(case["indices"]))
    elif op == "levi_civita_contract":
        out = img.levi_civita_contract(_tuple2(case["indices"]))
    elif op == "transpose":
        out = img.transpose(tuple(case["axes"]))
    elif op == "norm":
        out = img.norm()
    elif op == "normalize":
        out = img.normalize()
    elif op == "times_group_element":
        gg = np.rint(arrays[f"{case['id']}/gg"]).astype(np.int64)  # ginjax wants integer operators
        out = img.times_group_element(gg, precision=jax.lax.Precision.HIGHEST)
    elif op == "max_pool":
        out = img.max_pool(case["size"])
    elif op == "average_pool":
        out = img.average_pool(case["size"])
    elif op == "unpool":
        out = img.unpool(case["size"])
    elif op == "translate":
        out = img.translate(jnp.asarray(case["shift"]))
    else:
        raise ValueError(f"unknown op {op!r}")
    return np.asarray(out.data), out.parity


def main(argv):
    src, dst = argv[1], argv[2]
    with np.load(src) as f:
        arrays = {name: f[name] for name in f.files}
    spec = json.loads(str(arrays.pop("spec")))
    out = {}
    for case in spec:
        data, parity = run_case(case, arrays)
        out[case["id"]] = data
        if parity is not None:
            out[case["id"] + "/parity"] = np.asarray(parity)
    for D in (2, 3):
        out[f"operators/{D}"] = np.stack([np.asarray(m) for m in geom.make_all_operators(D)]).astype(np.int64)
    import importlib.metadata as md

    out["versions"] = np.asarray(json.dumps({p: md.version(p) for p in ("ginjax", "jax", "numpy")}))
    np.savez(dst, **out)


if __name__ == "__main__":
    main(sys.argv)
