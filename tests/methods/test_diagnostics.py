"""`Method.diagnostics` names what it measures: the masks' sparsity apart from
the sparsity of what the forward pass uses."""
import jax
import jax.numpy as jnp
import pytest

import sparsejax as sj


def _params():
  return {"w": jax.random.normal(jax.random.key(0), (16, 4)),
          "b": jnp.zeros(4)}


def _at(sp, step):
  state = sp.init(_params())
  return state._replace(step=jnp.asarray(step, jnp.int32))


@pytest.mark.parametrize("grad", ["identity", "autodiff"])
def test_mask_decay_counts_beta_scaled_entries_as_present(maybe_jit, grad):
  # Phases over 100 steps: dense 0-9, sparse 10-89 (beta 1 -> 0 linearly at
  # c = 0.025, reaching 0 at sparse step 40), fine-tune 90-99.
  sp = sj.progressive_nm(sj.NM(1, 4), total_steps=100, dense_steps=10,
                         finetune_steps=10, decay="linear", c=0.025,
                         grad=grad)
  diag = maybe_jit(sp.diagnostics)
  for step, mask, forward in [(5, 0.75, 0.0), (30, 0.75, 0.0),
                              (60, 0.75, 0.75), (95, 0.75, 0.75)]:
    d = diag(_at(sp, step))
    assert float(d["mask_sparsity"]) == pytest.approx(mask), step
    assert float(d["forward_sparsity"]) == pytest.approx(forward), step
    assert float(d["forward_sparsity/w"]) == pytest.approx(forward), step
    assert float(d["mask_sparsity/w"]) == pytest.approx(mask), step
    # The forward view agrees: count the entries it actually zeroes.
    view = sp.view(_params(), _at(sp, step))["w"]
    assert float(jnp.mean(view == 0)) == pytest.approx(forward), step


def test_hard_mask_forward_sparsity_is_mask_sparsity(maybe_jit):
  sp = sj.ste(sj.NM(2, 4))
  d = maybe_jit(sp.diagnostics)(_at(sp, 0))
  assert float(d["mask_sparsity"]) == pytest.approx(0.5)
  assert float(d["forward_sparsity"]) == pytest.approx(0.5)
  assert "sparsity" not in d  # one name for one thing


def test_dense_phase_forward_is_dense_without_mask_decay(maybe_jit):
  sp = sj.progressive_nm(sj.NM(2, 4), total_steps=20, dense_steps=5,
                         decay=None)
  d = maybe_jit(sp.diagnostics)(_at(sp, 2))
  assert float(d["mask_sparsity"]) == pytest.approx(0.5)
  assert float(d["forward_sparsity"]) == 0.0
  d = maybe_jit(sp.diagnostics)(_at(sp, 10))
  assert float(d["forward_sparsity"]) == pytest.approx(0.5)
