"""Time one training step of ginjax's own equivariant ResNet (run with the python of .venv-ginjax, not the escnn one).

Usage: ``.venv-ginjax/bin/python comparisons/ginjax_resnet_step.py '{"width": 16, "size": 64, "batch": 8,
"num_blocks": 8, "orders": [0, 1, 2], "reps": 3}'``; prints one JSON line ``{"compile_s", "step_s": [...],
"params", "loss"}`` (``params``: entries of all arrays in the model, its fixed invariant filters included).

The model: ``ginjax.models.ResNet`` (equivariant: ConvContract with the invariant filters of side 3 for tensor
orders 0..2 and both parities, VectorNeuronNonlinear, pre-activation blocks; no normalisation unless
``"group_norm": true``, since ginjax's equivariant LayerNorm refuses k > 1), input one scalar, output one vector,
hidden ``width`` fields of every order in ``orders`` (``mid_keys``), toroidal grid. One step = loss and gradient
(``eqx.filter_value_and_grad`` of the MSE over a vmapped batch) and an Adam update, jitted; the first call
(compilation) is timed apart. Imports neither torch nor escnn; called by ``bench_models.py``.
"""
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# one thread, as the torch side (set before jax is imported)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import equinox as eqx  # noqa: E402
import optax  # noqa: E402
import ginjax.geometric as geom  # noqa: E402
from ginjax import models  # noqa: E402


def main(cfg):
    D, W, N, B = 2, cfg["width"], cfg["size"], cfg["batch"]
    key = jax.random.PRNGKey(0)
    operators = geom.make_all_operators(D)
    filters = geom.get_invariant_filters([3], [0, 1, 2], [0, 1], D, operators)
    scalar, vector = ((), 0), ((False,), 0)
    in_keys = geom.Signature(((scalar, 1),))
    out_keys = geom.Signature(((vector, 1),))
    mid_keys = geom.Signature(tuple((((False,) * k, 0), W) for k in cfg["orders"]))
    model = models.ResNet(D, in_keys, out_keys, depth=W, num_blocks=cfg["num_blocks"], num_conv=2,
                          equivariant=True, conv_filters=filters, use_group_norm=cfg.get("group_norm", False),
                          mid_keys=mid_keys, key=key)
    rng = np.random.default_rng(0)
    x = geom.MultiImage({scalar: jnp.asarray(rng.standard_normal((B, 1, N, N)), jnp.float32)}, D)
    y = geom.MultiImage({vector: jnp.asarray(rng.standard_normal((B, 1, N, N, D)), jnp.float32)}, D)
    optim = optax.adam(1e-3)
    opt_state = optim.init(eqx.filter(model, eqx.is_array))

    def loss(m, x, y):
        out, _ = jax.vmap(m, in_axes=(0, None), out_axes=(0, None), axis_name="batch")(x, None)
        return jnp.mean((out.data[vector] - y.data[vector]) ** 2)

    @eqx.filter_jit
    def step(m, opt_state, x, y):
        value, grads = eqx.filter_value_and_grad(loss)(m, x, y)
        updates, opt_state = optim.update(grads, opt_state, eqx.filter(m, eqx.is_array))
        return eqx.apply_updates(m, updates), opt_state, value

    t0 = time.perf_counter()
    model, opt_state, value = step(model, opt_state, x, y)
    jax.block_until_ready(value)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(cfg["reps"]):
        t0 = time.perf_counter()
        model, opt_state, value = step(model, opt_state, x, y)
        jax.block_until_ready(value)
        times.append(time.perf_counter() - t0)
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array)))
    print(json.dumps({"compile_s": compile_s, "step_s": times, "params": n_params, "loss": float(value)}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
