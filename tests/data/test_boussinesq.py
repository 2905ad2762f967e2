"""escnn_tensor.data.boussinesq (task ``boussinesq-flux``): the gravity and heating fields have the symmetry they
need, the solver is right physics (instantaneous tendency, hydrostatic steady state, conserved energy and buoyancy
variance), the solver step and the whole generator (fine initial state -> filtered fields and fluxes) are
D4-equivariant for all 8 elements while uniform gravity is not, and the momentum flux is symmetric and PSD (on
full tensors: the task's default target holds it as a symmetric field, which cannot be asymmetric by construction,
so its symmetry is checked with target='full')."""
import math

import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor import hyperoctahedral_gspace, tensor_type
from escnn_tensor.data import get_task, spectral
from escnn_tensor.data import boussinesq as BQ
from escnn_tensor.data.navier_stokes import forcing, initial_vorticity
from escnn_tensor.groups import group_elements
from escnn_tensor.testing import assert_equivariant, equivariance_errors, random_input

FAST = {"factor": 2, "spin_up": 0.05}


@pytest.fixture(scope="module")
def gspace():
    return hyperoctahedral_gspace(2)


def _state_type(gspace):
    """(omega, b): a pseudoscalar and a scalar."""
    return tensor_type(gspace, [(0, -1, 1), (0, 1, 1)])


def _state(gspace, w, b):
    return GeometricTensor(torch.cat([spectral.to_escnn(w, 2, 0), spectral.to_escnn(b, 2, 0)], 1), _state_type(gspace))


def _random_state(n, size, seed, cutoff=None):
    gen = torch.Generator().manual_seed(seed)
    return initial_vorticity(n, size, gen, cutoff=cutoff), BQ.initial_buoyancy(n, size, gen, cutoff=cutoff)


def _step_map(solver, time):
    def f(x):
        w, b = spectral.from_escnn(x.tensor[:, :1], 2, 0), spectral.from_escnn(x.tensor[:, 1:], 2, 0)
        w1, b1 = solver.evolve(w, b, time)
        return _state(x.type.gspace, w1, b1)

    return f


# ------------------------------------------------------------------------------------------------ symmetry


@pytest.mark.parametrize("size", [16, 15])
def test_central_gravity_and_heating_are_invariant_fields(gspace, size):
    """g(M x) = M g(x) (central gravity, as a vector field) and the heating (a scalar) are unchanged by all 8
    elements; uniform gravity is changed by the elements that do not fix the y axis (6 of 8)."""
    vec = tensor_type(gspace, [(1, 1, 1)])
    g = GeometricTensor(spectral.to_escnn(BQ.gravity_field(size, "central", 2.0)[None], 2, 1), vec)
    h = GeometricTensor(spectral.to_escnn(BQ.heating(size, 1.0)[None], 2, 0), tensor_type(gspace, [(0, 1, 1)]))
    assert g.tensor.abs().max() > 1 and h.tensor.abs().max() > 0.5
    for e in group_elements(gspace):
        assert torch.allclose(g.transform(e).tensor, g.tensor, rtol=0, atol=1e-14)
        assert torch.allclose(h.transform(e).tensor, h.tensor, rtol=0, atol=1e-14)
    u = GeometricTensor(spectral.to_escnn(BQ.gravity_field(size, "uniform", 2.0)[None], 2, 1), vec)
    changed = [e for e in group_elements(gspace) if not torch.allclose(u.transform(e).tensor, u.tensor, atol=1e-12)]
    assert len(changed) == 6


@pytest.mark.parametrize("size", [16, 15])
@pytest.mark.parametrize("gravity", ["central", "none"])
def test_solver_step_is_d4_equivariant(gspace, size, gravity):
    """(omega, b)(t) -> (omega, b)(t + 0.1) with vorticity forcing and heating on, for all 8 elements (omega a
    pseudoscalar, b a scalar), on band-limited random states and on (small) noise; even and odd N."""
    sol = BQ.BoussinesqSolver(size, gravity=gravity, gravity_strength=3.0, heating_amplitude=1.0,
                              forcing_amplitude=0.3)
    w, b = _random_state(2, size, 0)
    assert_equivariant(_step_map(sol, 0.1), _state(gspace, w, b))
    noise = random_input(_state_type(gspace), size, 2, generator=torch.Generator().manual_seed(1))
    assert_equivariant(_step_map(sol, 0.1), GeometricTensor(0.3 * noise.tensor, noise.type))


def test_uniform_gravity_breaks_the_equivariance(gspace):
    """Control: the textbook uniform gravity (torque G d_x b) fails the same check, with an error far above
    round-off for the elements that move the y axis; only the identity and the reflection x -> -x pass."""
    size = 16
    sol = BQ.BoussinesqSolver(size, gravity="uniform", gravity_strength=3.0, heating_amplitude=0.0)
    w, b = _random_state(2, size, 2)
    errors = equivariance_errors(_step_map(sol, 0.1), _state(gspace, w, b))
    assert sorted(errors.values())[2] > 1e-3
    assert sum(e < 1e-10 for e in errors.values()) == 2


@pytest.mark.parametrize("factor, size", [(2, 8), (3, 5)])
def test_whole_generator_is_d4_equivariant(gspace, factor, size):
    """Generating from g . (initial omega, b) gives g . (inputs) and g . (targets): fine initial state -> spin-up
    -> filtered (b_bar, u_bar) and fluxes (sigma, tau), all 8 elements, even and odd factor and size."""
    task = get_task("boussinesq-flux", factor=factor, spin_up=0.1)
    fine = factor * size
    sol = task.solver(size)
    w, b = _random_state(2, fine, 3)
    in_type, out_type = task.in_type(gspace), task.out_type(gspace)

    def generate(x, which):
        w0, b0 = spectral.from_escnn(x.tensor[:, :1], 2, 0), spectral.from_escnn(x.tensor[:, 1:], 2, 0)
        w1, b1 = sol.evolve(w0, b0, task.options["spin_up"])
        fields = torch.cat([spectral.to_escnn(b1, 2, 0), spectral.to_escnn(sol.velocity(w1), 2, 1)], 1)
        out = task.from_fine(fields)[which]
        return GeometricTensor(out, in_type if which == 0 else out_type)

    x = _state(gspace, w, b)
    assert_equivariant(lambda x: generate(x, 0), x)
    assert_equivariant(lambda x: generate(x, 1), x)
    # the coarse-graining alone, on noise (fine b and u with no structure)
    noise = random_input(tensor_type(gspace, [(0, 1, 1), (1, 1, 1)]), fine, 2, generator=torch.Generator().manual_seed(4))
    assert_equivariant(lambda x: GeometricTensor(task.from_fine(x.tensor)[1], out_type), noise)


# ------------------------------------------------------------------------------------------------ physics


def test_instantaneous_tendency_matches_the_equations():
    """(state(eps) - state) / eps against the right-hand sides computed independently (u from the stream function,
    the torque d_y b g_x - d_x b g_y, forcing, heating) on fields band limited to |m| < N/6 (nothing dealiased);
    with uniform gravity the torque is the textbook G d_x b."""
    size, nu, kappa, eps = 24, 2e-3, 3e-3, 1e-6
    w, b = _random_state(1, size, 5, cutoff=size / 6)
    h = 1.0 / size
    psi = -spectral.solve_poisson(w, 2, spacing=h)
    dpsi = spectral.gradient(psi, 2, spacing=h)
    u = torch.stack([dpsi[..., 1], -dpsi[..., 0]], dim=-1)
    dw, db = spectral.gradient(w, 2, spacing=h), spectral.gradient(b, 2, spacing=h)
    lap = lambda f: spectral.divergence(spectral.gradient(f, 2, spacing=h), spacing=h)
    c = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2) / size
    G = 2.5
    gx = -G * torch.sin(2 * math.pi * c)[:, None].expand(size, size)
    gy = -G * torch.sin(2 * math.pi * c)[None, :].expand(size, size)
    heat = 0.7 * (torch.cos(2 * math.pi * c)[:, None] + torch.cos(2 * math.pi * c)[None, :]) / 2
    for gravity, torque in (("central", db[..., 1] * gx - db[..., 0] * gy), ("uniform", G * db[..., 0])):
        sol = BQ.BoussinesqSolver(size, nu, kappa, gravity, G, heating_amplitude=0.7, forcing_amplitude=0.4, dt=eps)
        w1, b1 = sol.evolve(w, b, eps)
        exp_w = -(u * dw).sum(-1) + nu * lap(w) + torque + forcing(size, 0.4)
        exp_b = -(u * db).sum(-1) + kappa * lap(b) + heat
        assert ((w1 - w) / eps - exp_w).abs().max() <= 1e-4 * exp_w.abs().max()
        assert ((b1 - b) / eps - exp_b).abs().max() <= 1e-4 * exp_b.abs().max()


def test_hydrostatic_state_is_steady_under_central_gravity_only():
    """At rest with b = H (cos 2 pi X + cos 2 pi Y) / (2 (2 pi)^2 kappa) (a function of the potential, and the
    balance of diffusion and heating) nothing moves under central gravity (to 1e-9 after a long run); under
    uniform gravity the same b is not in balance and sets the fluid in motion."""
    size, kappa, H = 16, 1e-2, 0.5
    b = BQ.heating(size, H) / ((2 * math.pi) ** 2 * kappa)
    w = torch.zeros(size, size, dtype=torch.float64)
    sol = BQ.BoussinesqSolver(size, 1e-2, kappa, "central", 3.0, heating_amplitude=H)
    w1, b1 = sol.evolve(w, b, 0.5)
    assert w1.abs().max() <= 1e-9 * b.abs().max() and (b1 - b).abs().max() <= 1e-9 * b.abs().max()
    moving = BQ.BoussinesqSolver(size, 1e-2, kappa, "uniform", 3.0, heating_amplitude=H).evolve(w, b, 0.5)[0]
    assert moving.abs().max() > 0.1 * b.abs().max()


@pytest.mark.parametrize("gravity", ["central", "none"])
def test_inviscid_unforced_flow_conserves_energy_and_buoyancy_variance(gravity):
    """With nu = kappa = 0 and no forcing: E = 1/2 sum |u|^2 - sum b Phi, sum b and sum b^2 are conserved
    exactly by the dealiased equations; what is left is RK4's error (below 1e-7 here, and divided by more than 10
    when dt is halved), while the flow moves and, under gravity, kinetic and potential energy are exchanged."""
    size = 24
    w0, b0 = _random_state(2, size, 6)
    drift = []
    for refine in (1, 2):
        sol = BQ.BoussinesqSolver(size, 0.0, 0.0, gravity, 1.0, heating_amplitude=0.0, dt=0.25 / size / refine)
        w1, b1 = sol.evolve(w0, b0, 0.3)
        phi = sol.potential()
        kinetic = lambda w: 0.5 * (sol.velocity(w) ** 2).sum(dim=(-3, -2, -1))
        potential = lambda b: -(b * phi).sum(dim=(-2, -1))
        e0, e1 = kinetic(w0) + potential(b0), kinetic(w1) + potential(b1)
        drift.append(((e1 - e0).abs() / kinetic(w0)).max().item())
    assert drift[1] < 1e-7
    if gravity == "central":
        assert drift[0] / drift[1] > 10
    var = lambda b: (b * b).sum(dim=(-2, -1))
    assert ((var(b1) - var(b0)).abs() / var(b0)).max() < 1e-6
    assert (b1.sum(dim=(-2, -1)) - b0.sum(dim=(-2, -1))).abs().max() < 1e-10 * b0.abs().sum()
    assert (b1 - b0).abs().max() > 0.1 * b0.abs().max()
    exchanged = ((kinetic(w1) - kinetic(w0)).abs() / kinetic(w0)).max()
    assert exchanged > 1e-2 if gravity == "central" else exchanged < 1e-7


def test_fluxes_are_the_filtered_covariances():
    """tau is symmetric (exactly) and PSD; with a vanishing Gaussian the filter is the plain cell average, and
    sigma_i = mean(u_i b) - mean(u_i) mean(b) over each cell; the covariance inequality sigma_i^2 <= tau_ii var(b)
    holds (the filter weights are non-negative)."""
    gen = torch.Generator().manual_seed(7)
    u = torch.randn(2, 12, 12, 2, dtype=torch.float64, generator=gen)
    b = torch.randn(2, 12, 12, dtype=torch.float64, generator=gen) + u[..., 0]  # correlated with u_x
    b_bar, u_bar, sigma, tau = BQ.coarse_fluxes(u, b, 3, filter_width=1e-3)
    cells = lambda f: f.reshape(2, 4, 3, 4, 3).mean(dim=(2, 4))
    for i in range(2):
        expected = cells(u[..., i] * b) - cells(u[..., i]) * cells(b)
        assert torch.allclose(sigma[..., i], expected, rtol=0, atol=1e-14)
    assert torch.allclose(b_bar, cells(b), rtol=0, atol=1e-14)
    _, _, sigma, tau = BQ.coarse_fluxes(u, b, 3, filter_width=2.0)
    var_b = BQ.coarse_fluxes(torch.stack([b, b], -1), b, 3, filter_width=2.0)[2][..., 0]
    assert torch.equal(tau[..., 0, 1], tau[..., 1, 0])
    assert torch.linalg.eigvalsh(tau).min() >= -1e-12 * tau.abs().max()
    assert (sigma**2 <= torch.diagonal(tau, dim1=-2, dim2=-1) * var_b[..., None] + 1e-12).all()
    assert sigma[..., 0].mean() > 0.1  # the correlation of b with u_x shows


def test_task_data_are_symmetric_spun_up_and_finite():
    """Task data (small settings): with target='full' the target's tau channels xy and yx are identical and tau is
    PSD, the fluxes are not negligible against the resolved products, and everything is finite; inputs are (b_bar,
    u_bar); the default target is (sigma, tau as (xx, sqrt(2) xy, yy)) of the same data."""
    task = get_task("boussinesq-flux", target="full", **FAST)
    data = task.make(3, 8, seed=0)
    assert data.inputs.shape == (3, 3, 8, 8) and data.targets.shape == (3, 6, 8, 8)
    assert torch.isfinite(data.inputs).all() and torch.isfinite(data.targets).all()
    tau = spectral.from_escnn(data.targets[:, 2:], 2, 2)
    assert torch.equal(tau[..., 0, 1], tau[..., 1, 0])
    sym = get_task("boussinesq-flux", **FAST).make(3, 8, seed=0)
    assert sym.targets.shape == (3, 5, 8, 8) and torch.equal(sym.inputs, data.inputs)
    t = data.targets
    expected = torch.cat([t[:, :2], t[:, 2:3], math.sqrt(2) * t[:, 3:4], t[:, 5:6]], 1)
    torch.testing.assert_close(sym.targets, expected, rtol=0, atol=1e-15 * t.abs().max())
    assert torch.linalg.eigvalsh(tau).min() >= -1e-12 * tau.abs().max()
    u_bar = spectral.from_escnn(data.inputs[:, 1:], 2, 1)
    assert tau.diagonal(dim1=-2, dim2=-1).sum(-1).mean() > 1e-3 * (u_bar**2).sum(-1).mean()
    assert data.targets[:, :2].abs().max() > 0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="gravity must be one of"):
        BQ.BoussinesqSolver(8, gravity="down")
    with pytest.raises(ValueError, match="viscosity must be a finite number >= 0"):
        BQ.BoussinesqSolver(8, viscosity=-1.0)
    sol = BQ.BoussinesqSolver(8)
    with pytest.raises(ValueError, match="same shape"):
        sol.evolve(torch.zeros(2, 8, 8, dtype=torch.float64), torch.zeros(8, 8, dtype=torch.float64), 0.1)
    with pytest.raises(ValueError, match=r"b must be a tensor ending in \(8, 8\)"):
        sol.evolve(torch.zeros(8, 8, dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64), 0.1)
    with pytest.raises(RuntimeError, match="CFL number"):
        BQ.BoussinesqSolver(16, dt=0.2).evolve(*_random_state(1, 16, 8), 1.0)
    with pytest.raises(ValueError, match="b must have the shape of u"):
        BQ.coarse_fluxes(torch.zeros(1, 8, 8, 2, dtype=torch.float64), torch.zeros(1, 4, 4, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match=r"option gravity must be one of \['central', 'none'\]"):
        get_task("boussinesq-flux", gravity="uniform")  # the task's generator must stay D4-equivariant
    with pytest.raises(ValueError, match="fine must be"):
        get_task("boussinesq-flux").from_fine(torch.zeros(1, 2, 8, 8, dtype=torch.float64))
