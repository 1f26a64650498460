"""The cross-encoder is ranked with its head's own activation: sigmoid for one label, softmax
(probability of the last label) for two; never the raw last logit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from query.rerank import CrossEncoderReranker, activate


def test_one_label_is_a_sigmoid():
    assert activate(np.array([[0.0], [2.0], [-1.0]])).tolist() == pytest.approx(
        [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1))])
    assert activate(np.array([0.0, 2.0])).tolist() == pytest.approx([0.5, 1 / (1 + math.exp(-2))])


def test_two_labels_are_a_softmax_of_the_relevant_class():
    logits = np.array([[5.0, 4.0], [-3.0, 3.5], [1000.0, 1001.0]])  # the last row would overflow naively
    want = [math.exp(4) / (math.exp(5) + math.exp(4)), 1 / (1 + math.exp(-6.5)), 1 / (1 + math.exp(-1))]
    assert activate(logits).tolist() == pytest.approx(want)
    # the raw last logit ranks row 0 (4.0) above row 1 (3.5); the class probability does not
    head = logits[:2]
    assert np.argsort(-head[:, 1]).tolist() == [0, 1]
    assert np.argsort(-activate(head)).tolist() == [1, 0]


@pytest.fixture(scope="module")
def tokenizer_folder():
    from esrag.embedder import resolve_model_path

    return resolve_model_path("all-MiniLM-L6-v2", None)


@pytest.mark.parametrize("labels", [1, 2])
def test_cross_encoder_scores_with_its_activation(tmp_path, tokenizer_folder, labels):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(labels)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=labels)
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(str(tokenizer_folder)).save_pretrained(tmp_path)

    ce = CrossEncoderReranker(tmp_path, batch_size=2, device="cpu")
    texts = ["Read a file line by line.", "Bread needs a hot oven.", "Vacuum reclaims space."]
    logits = ce.logits("how to read a file", texts)
    assert logits.shape == (3, labels)
    scores = ce.scores("how to read a file", texts)
    if labels == 1:
        want = [1 / (1 + math.exp(-float(x))) for x in logits[:, 0]]
    else:
        want = [math.exp(b) / (math.exp(a) + math.exp(b)) for a, b in logits.tolist()]
    assert scores == pytest.approx(want, abs=1e-6)
    assert all(0.0 < s < 1.0 for s in scores)
