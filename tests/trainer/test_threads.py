from kibble.trainer.config import DatasetSpec, MixtureConfig, ModelConfig
from kibble.trainer.threads import fastest_threads

TINY = ModelConfig(layers=1, heads=2, width=32, ff=64, patch_hidden=4)


def test_the_fastest_measured_thread_count_is_picked(cartpole_dataset):
    config = MixtureConfig(
        datasets=[DatasetSpec(str(cartpole_dataset))], model=TINY, context=48, batch_size=4
    )
    best, rates = fastest_threads(config, [1, 2], steps=2)
    assert set(rates) == {1, 2} and all(r > 0 for r in rates.values())
    assert rates[best] == max(rates.values())
    assert fastest_threads(config, [1]) == (1, {})  # one candidate: nothing to measure
