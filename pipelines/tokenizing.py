"""The tokenize stage: a validated ``Episode`` -> a ``TokenizedEpisode``."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gymnasium import spaces

from kibble.schemas.records import Episode, TokenizedEpisode
from kibble.tokenize.episode import EpisodeTokenizer, SpaceTokenizer
from kibble.tokenize.spaces import text_tokenizer


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


def text_model_record(observation_space: spaces.Space, text_model: str | None) -> dict:
    """``{"text_model": {file, sha256, pieces}}`` for a task with text observations, else {}.

    The manifest names the SentencePiece model that tokenized a task's text (by content:
    the same ids need the same model), so a trainer or evaluator can check it has it.
    """
    leaves = SpaceTokenizer(observation_space, "observation", text_model).text_leaves
    if not leaves:
        return {}
    path = Path(leaves[0].model_file)
    return {
        "text_model": {
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "pieces": text_tokenizer(str(path)).vocab_size,
        }
    }
