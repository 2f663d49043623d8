"""The tokenize stage: a validated ``Episode`` -> a ``TokenizedEpisode``."""

from __future__ import annotations

from kibble.schemas.records import Episode, TokenizedEpisode
from kibble.tokenize.episode import EpisodeTokenizer


def tokenize_episode(episode: Episode, tokenizer: EpisodeTokenizer) -> TokenizedEpisode:
    """Tokenize every timestep of ``episode`` with its task's tokenizer."""
    return TokenizedEpisode(
        task=episode.task,
        episode_id=episode.episode_id,
        episode_return=episode.episode_return,
        steps=tokenizer.tokenize(episode.observations, episode.actions),
        rewards=episode.rewards,
        terminated=episode.terminated,
        truncated=episode.truncated,
    )
