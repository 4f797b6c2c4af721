import pytest
import torch

from bertrec.modeling import backbone_hidden, build_model, head_features, item_logits, model_objective


@pytest.mark.parametrize(
    ("model_type", "objective"),
    [("bert", "masked"), ("gpt2", "next"), ("llama", "next"), ("gpt_neox", "next"), ("bert-generation", "next")],
)
def test_item_scores_equal_the_stock_logits(model_type, objective):
    model = build_model(model_type=model_type, vocab_size=40, max_positions=16, hidden_size=16, num_heads=2).eval()
    assert model_objective(model) == objective
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied item embeddings
    ids = torch.randint(1, 40, (3, 9))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        stock = model(input_ids=ids, attention_mask=mask).logits[..., 10:40]
        ours = item_logits(model, head_features(model, backbone_hidden(model, ids, mask)), 10, 30)
        subset = item_logits(
            model, head_features(model, backbone_hidden(model, ids, mask)), 10, 30, torch.tensor([3, 0])
        )
    assert torch.equal(ours, stock)
    assert torch.allclose(subset, stock[..., [3, 0]], atol=1e-6)


def test_sizes_reach_the_config():
    model = build_model(model_type="gpt2", vocab_size=30, max_positions=12, hidden_size=24, num_layers=3,
                        num_heads=4, intermediate_size=40, dropout=0.2)  # fmt: skip
    config = model.config
    assert (config.n_embd, config.n_layer, config.n_head, config.n_inner, config.n_positions) == (24, 3, 4, 40, 12)
    assert config.resid_pdrop == 0.2 and config.attn_pdrop == 0.0
    neox = build_model(model_type="gpt_neox", vocab_size=30, max_positions=12, hidden_size=24, dropout=0.3).config
    assert (neox.hidden_dropout, neox.attention_dropout, neox.use_parallel_residual) == (0.3, 0.0, False)
    assert neox.rope_parameters["partial_rotary_factor"] == 1.0  # every head dimension rotates
    assert neox.to_dict()["rotary_pct"] == 1.0  # written under transformers 4's name too (its default is 0.25)
    with pytest.raises(ValueError, match="divisible"):
        build_model(model_type="bert", vocab_size=30, max_positions=12, hidden_size=10, num_heads=3)
    with pytest.raises(ValueError, match="not supported"):
        build_model(model_type="t5", vocab_size=30, max_positions=12)


def test_bert_generation_is_a_causal_post_norm_decoder(tmp_path):
    """SASRec's post-norm block as stock BERT layers: a BertGenerationDecoder with is_decoder (causal: a later
    event never changes an earlier state) and SASRec's ReLU, loaded back by the causal Auto class."""
    from transformers import AutoModelForCausalLM, BertGenerationDecoder

    model = build_model(model_type="bert-generation", vocab_size=40, max_positions=16, hidden_size=16, num_heads=2)
    model.eval()
    assert isinstance(model, BertGenerationDecoder)
    assert (model.config.is_decoder, model.config.hidden_act, model_objective(model)) == (True, "relu", "next")
    ids = torch.randint(6, 40, (2, 8))
    mask = torch.ones_like(ids)
    changed = ids.clone()
    changed[:, 5:] = torch.randint(6, 40, (2, 3))
    with torch.no_grad():
        hidden, other = backbone_hidden(model, ids, mask), backbone_hidden(model, changed, mask)
    assert torch.allclose(hidden[:, :5], other[:, :5], atol=1e-6)
    assert not torch.allclose(hidden[:, 5:], other[:, 5:])
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is BertGenerationDecoder and model_objective(loaded) == "next"
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)
