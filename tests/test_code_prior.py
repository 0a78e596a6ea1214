"""CodePrior: N(0, I) as before, a mixture fit to codes, saved and loaded exactly, bad codes refused."""

import numpy as np
import pytest

from keras_timbre.models.code_prior import CodePrior


def two_clusters(n=200, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[4.0, 0.0, 0.0], [-4.0, 2.0, 0.0]])
    labels = rng.integers(0, 2, n)
    return centres[labels] + rng.normal(0.0, 0.3, (n, 3)), centres


def test_the_standard_prior_draws_what_n01_draws_seed_for_seed():
    prior = CodePrior.standard(8)
    assert prior.is_standard and prior.dim == 8
    np.testing.assert_array_equal(
        prior.sample(5, seed=3), np.random.default_rng(3).standard_normal((5, 8)).astype("float32")
    )


def test_a_fitted_prior_draws_where_the_codes_lie():
    codes, centres = two_clusters()
    prior = CodePrior.fit(codes, components=2)
    assert not prior.is_standard
    order = np.argsort(prior.means[:, 0])
    np.testing.assert_allclose(prior.means[order], centres[::-1], atol=0.15)
    samples = prior.sample(500, seed=0)
    nearest = np.min(np.linalg.norm(samples[:, None] - centres[None], axis=-1), axis=1)
    assert np.median(nearest) < 0.6  # near a cluster: 0.3 * sqrt(3) = 0.52 for the codes themselves
    standard_nearest = np.min(np.linalg.norm(CodePrior.standard(3).sample(500, 0)[:, None] - centres[None], axis=-1), 1)
    assert np.median(standard_nearest) > 2.0
    np.testing.assert_array_equal(prior.sample(4, seed=1), prior.sample(4, seed=1))
    assert not np.allclose(prior.sample(4, seed=1), prior.sample(4, seed=2))


def test_fewer_codes_fit_fewer_components():
    codes, _ = two_clusters(n=6)
    assert len(CodePrior.fit(codes, components=10).weights) == 3


def test_save_and_load_round_trip(tmp_path):
    prior = CodePrior.fit(two_clusters()[0], components=2)
    prior.save(tmp_path / "code_prior.npz")
    loaded = CodePrior.load(tmp_path / "code_prior.npz")
    for name in ("weights", "means", "scales"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(prior, name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["code_prior.npz"]  # no temporary left behind


@pytest.mark.parametrize("codes", [np.zeros((1, 3)), np.zeros(5), np.array([[0.0, np.nan], [1.0, 1.0]])])
def test_bad_codes_are_refused(codes):
    with pytest.raises(ValueError, match="finite"):
        CodePrior.fit(codes)
