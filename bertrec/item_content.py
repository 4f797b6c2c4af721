"""Items as content: attribute tokens (brand, category, genre) composed into each item's embedding.

An item's vector, wherever the model reads one (the input embedding and the tied or untied output layer), is
its own id row plus the mean of its attribute rows::

    item_vector(i) = E[<i:i>] + mean(E[<f:brand:Acme>], E[<f:categories:Pens>], ...)

so an item seen twice in training still sits near the items that share its brand and categories, and every
gradient an item receives also trains its attributes. Attribute tokens are ordinary vocabulary tokens (before
the item block, so item ids stay contiguous and new items still append), one per value of each column, plus one
``<f:column:[NONE]>`` per column for items without a value there (a value shared by fewer than
``min_attribute_items`` catalogue items says nothing the id does not, and is counted into ``[NONE]`` too).

The composition is a ``torch.nn.utils.parametrize`` parametrization of the embedding weights, so the stock
model class runs unchanged in training, evaluation and the loss (they all read ``.weight``). The saved model is
folded (:func:`folded`): each item row already holds its composed vector, which makes the folder a plain stock
model whose item scores are exactly the trained ones; the attribute rows stay in the vocabulary, so an item
with content alone can be composed from them later. The item-to-attribute table is saved with the tokenizer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import polars as pl
import torch
from torch.nn.utils import parametrize

logger = logging.getLogger(__name__)
NONE_VALUE = "[NONE]"  # brackets are escaped in real values, so no value can spell this token


class ComposedItems(torch.nn.Module):
    """The parametrization: ``weight [vocab, hidden]`` -> the same rows with each item row plus the mean of its
    attribute rows. ``attribute_ids [items, k]`` holds vocabulary ids (padded with -1), ``weights [items, k]``
    the 1/count of each item's attributes (0 on padding).

    With ``text_vectors [items, dim]`` (the item encoder's unit vectors, zero for an item without text), each
    row also gets ``text_vectors @ text_projection``, a learned ``[dim, hidden]`` map that starts at zero (the
    model starts as the attribute-only one). Every item's gradient trains the one map, so a rarely seen item
    still moves towards the items whose text resembles its own, and an item added after training is placed by
    its text through the map the catalogue taught (``add_items_from_content``)."""

    def __init__(
        self,
        item_offset: int,
        attribute_ids: torch.Tensor,
        weights: torch.Tensor,
        id_rows: bool = True,
        text_vectors: torch.Tensor | None = None,
        text_projection: torch.Tensor | None = None,
    ):
        super().__init__()
        self.item_offset, self.id_rows = item_offset, id_rows
        self.id_dropout = 0.0  # a training setting, not part of the model: ``attach`` sets it
        # not persistent: checkpoints and best-weight files hold parameters only; the table is rebuilt from
        # the tokenizer, which is saved beside every model
        self.register_buffer("attribute_ids", attribute_ids, persistent=False)
        self.register_buffer("weights", weights, persistent=False)
        self.register_buffer("text_vectors", text_vectors, persistent=False)
        self.text_projection = None if text_projection is None else torch.nn.Parameter(text_projection)

    @property
    def num_items(self) -> int:
        return self.attribute_ids.shape[0]

    def content(self, weight: torch.Tensor) -> torch.Tensor:
        """``[items, hidden]``: each item's mean attribute row (plus its text term): all of its row but the id."""
        attributes = weight[self.attribute_ids.clamp(min=0)]  # [items, k, hidden]
        content = (attributes * self.weights.to(weight.dtype)[..., None]).sum(dim=1)
        if self.text_projection is not None:
            content = content + self.text_vectors.to(weight.dtype) @ self.text_projection.to(weight.dtype)
        return content

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        end = self.item_offset + self.num_items
        items = self.content(weight)
        if self.id_rows:
            ids = weight[self.item_offset : end]
            items = items + (ids * self._kept_ids(weight) if self.training and self.id_dropout else ids)
        return torch.cat([weight[: self.item_offset], items, weight[end:]])

    def _kept_ids(self, weight: torch.Tensor) -> torch.Tensor:
        """``[items, 1]``: 0 for the items that are their content alone in this read, 1 for the others.

        Why: an item read without its id, as DropoutNet trains, must be told apart from its neighbours by its
        attributes and text, so the content part learns to rank items on its own, and a rarely seen item's
        id row carries only what its content cannot say. Not rescaled: a dropped item looks exactly like an item
        added from content after training. Drawn from torch's global generator, which the training loop seeds
        per step, so a resumed run draws the same."""
        keep = torch.rand(self.num_items, 1, device=weight.device) >= self.id_dropout
        return keep.to(weight.dtype)


def column_offsets(attributes: dict[str, list[str]]) -> list[int]:
    """Where each column's values start among all attribute values; each starts with its ``[NONE]``."""
    return [int(o) for o in np.cumsum([0, *(len(v) for v in attributes.values())])[:-1]]


def attribute_table(
    items: Sequence[str],
    features: pl.DataFrame,
    columns: Sequence[str],
    min_attribute_items: int = 2,
    keep_all: Sequence[str] = (),
) -> tuple[dict[str, list[str]], list[list[int]], dict]:
    """The attribute vocabulary and each item's attributes, from a feature table.

    ``features``: ``item_id`` (String) and, per column in ``columns``, a ``List[String]`` (several values, e.g.
    a category path) or a ``String`` column. Returns ``values`` (column -> its values, ``[NONE]`` first, then by
    how many catalogue items hold them, then by value), ``item_attributes`` (per item of ``items``, indices into
    the flattened ``values``) and a report of what was mapped to ``[NONE]`` and why. Columns in ``keep_all``
    keep every value (semantic-ID codes: a code held by one item still names that item).
    """
    catalogue = pl.DataFrame({"item_id": list(items)}, schema={"item_id": pl.String})
    missing_columns = [c for c in columns if c not in features.columns]
    if missing_columns:
        raise ValueError(f"item features have no column(s) {missing_columns}; columns: {features.columns}")
    table = catalogue.join(features.select("item_id", *columns), on="item_id", how="left", maintain_order="left")
    report: dict = {
        "items": len(items),
        "items_without_features": int(catalogue.join(features, on="item_id", how="anti").height),
        "min_attribute_items": min_attribute_items,
        "columns": {},
    }
    values: dict[str, list[str]] = {}
    per_column: list[list[list[str]]] = []
    for column in columns:
        series = table[column]
        if series.dtype == pl.String:
            series = series.map_elements(lambda v: [] if v is None or v == "" else [v], return_dtype=pl.List(pl.String))
        lists = [[v for v in dict.fromkeys(row or []) if v] for row in series.to_list()]  # unique, order kept
        counts = pl.Series("value", [v for row in lists for v in row], dtype=pl.String).value_counts()
        least = 1 if column in keep_all else min_attribute_items
        kept = counts.filter(pl.col("count") >= least).sort(["count", "value"], descending=[True, False])
        keep = set(kept["value"].to_list())
        values[column] = [NONE_VALUE, *kept["value"].to_list()]
        lists = [[v for v in row if v in keep] for row in lists]
        per_column.append(lists)
        report["columns"][column] = {
            "values": len(keep),
            "rare_values_dropped": int(counts.height - kept.height),
            "items_with_none": sum(1 for row in lists if not row),
        }
    offsets = column_offsets(values)
    index = [{value: offset + i for i, value in enumerate(vals)} for offset, vals in zip(offsets, values.values())]
    item_attributes = []
    for position in range(len(items)):
        row = []
        for column_index, lists in enumerate(per_column):
            chosen = lists[position] or [NONE_VALUE]
            row += [index[column_index][v] for v in chosen]
        item_attributes.append(row)
    return values, item_attributes, report


ITEM_TOKENS = ("id", "semantic", "id+semantic")


def with_attributes(
    tokenizer,
    features: pl.DataFrame,
    columns: Sequence[str],
    min_attribute_items: int = 2,
    keep_all: Sequence[str] = (),
    id_rows: bool = True,
    text_vectors: bool = False,
) -> tuple[object, dict]:
    """A copy of ``tokenizer`` whose vocabulary holds the attributes of its items (see ``attribute_table``),
    and the report of what was mapped to ``[NONE]``. ``id_rows=False``: items are their attributes alone;
    ``text_vectors``: their rows hold their text vectors too (the caller sets the item encoder)."""
    from dataclasses import replace

    from bertrec.tokenization import EventTokenizer

    values, item_attributes, report = attribute_table(
        tokenizer.spec.items, features, columns, min_attribute_items, keep_all
    )
    spec = replace(
        tokenizer.spec,
        attributes=values,
        item_attributes=item_attributes,
        item_id_rows=id_rows,
        item_text_vectors=text_vectors,
    )
    return EventTokenizer(spec, tokenizer.item_encoder), report


def tokenizer_with_features(
    tokenizer,
    path: str,
    columns: Sequence[str] | None,
    min_attribute_items: int = 2,
    item_tokens: str = "id",
    text_columns: Sequence[str] | None = None,
    semantic_levels: int = 3,
    codebook_size: int = 64,
    seed: int = 0,
    text_encoder: str = "tfidf",
    text_dim: int = 64,
    text_vectors: bool = False,
):
    """``tokenizer`` with the attributes of ``path``'s categorical columns (``columns``, or the reader's
    default; ``["none"]`` for none) and, for ``item_tokens`` with "semantic", semantic-ID codes from the
    items' text (``text_columns``, or the reader's default; ``bertrec.semantic_ids`` over
    ``bertrec.text_vectors``); ``text_vectors``: the items' text vectors join their rows (``ComposedItems``).
    What was read, mapped to ``[NONE]`` and collided is logged and returned in the tokenizer's summary."""
    from bertrec.data.item_features import read_item_features

    if item_tokens not in ITEM_TOKENS:
        raise ValueError(f"--item_tokens {item_tokens!r} is not one of {list(ITEM_TOKENS)}")
    chosen = None if columns is None else [c for c in columns if c.lower() != "none"]
    features = read_item_features(path, categorical=chosen, text=list(text_columns) if text_columns else None)
    table, attribute_columns, keep_all = features.table, list(features.categorical), []
    encoder = None
    semantic = "semantic" in item_tokens
    if semantic or text_vectors:
        from bertrec.semantic_ids import SemanticIdEncoder

        if not features.text:
            raise ValueError(
                f"{path}: semantic IDs and text vectors are made from item text; name its text columns with "
                "--item_text_columns"
            )
        # fit on the training catalogue only: an item the model never trains on (one published later, or a
        # benchmark's held-out cold item) gets its codes from the saved encoder, as it would in production
        catalogue = features.for_items(tokenizer.spec.items)
        levels = semantic_levels if semantic else 0
        encoder, codes, code_report = SemanticIdEncoder.fit(
            catalogue, features.text, levels, codebook_size, seed, text_encoder, text_dim
        )
        if semantic:
            table = table.join(codes, on="item_id", how="left")
            keep_all = encoder.columns
            attribute_columns += keep_all
        logger.info("item text from %s (%s): %s", features.text, text_encoder, code_report)
    tokenizer, report = with_attributes(
        tokenizer,
        table,
        attribute_columns,
        min_attribute_items,
        keep_all,
        id_rows=item_tokens != "semantic",
        text_vectors=text_vectors,
    )
    tokenizer.item_encoder = encoder
    logger.info("item features %s: %s; attributes: %s", path, features.report, report)
    return tokenizer


def summary(tokenizer) -> dict | None:
    """What ``metrics.json`` and the model card say of the item-token scheme: attribute values per column and
    the share of items holding a real value in each; ``None`` for an id-only model."""
    spec = tokenizer.spec
    if not spec.item_attributes:
        return None
    offsets = column_offsets(spec.attributes)
    none_ids = set(offsets)  # [NONE] is each column's first value
    columns = {}
    for (column, values), offset in zip(spec.attributes.items(), offsets):
        span = range(offset, offset + len(values))
        with_value = sum(1 for row in spec.item_attributes if any(a in span and a not in none_ids for a in row))
        columns[column] = {"values": len(values) - 1, "items_with_value": with_value}
    scheme = "id + mean of attribute tokens" if spec.item_id_rows else "mean of attribute tokens (no id rows)"
    result = {"scheme": scheme, "items": len(spec.items), "columns": columns}
    encoder = tokenizer.item_encoder
    if spec.item_text_vectors:
        result["text_vectors"] = {"encoder": encoder.text.description, "text_columns": encoder.text_columns}
    if encoder is not None and encoder.columns:
        levels, codebook = encoder.centroids.shape[:2]
        result["semantic_ids"] = {
            "encoder": encoder.text.description,
            "text_columns": encoder.text_columns,
            "levels": int(levels),
            "codebook_size": int(codebook),
        }
    return result


def composition(tokenizer, device: torch.device | None = None, hidden_size: int | None = None) -> ComposedItems:
    """The parametrization for ``tokenizer``'s items and attributes (and text vectors: the map its item encoder
    holds, or a new one of ``hidden_size`` columns at zero)."""
    rows = tokenizer.spec.item_attributes
    width = max((len(r) for r in rows), default=1)
    ids = torch.full((len(rows), width), -1, dtype=torch.long)
    weights = torch.zeros((len(rows), width))
    for i, row in enumerate(rows):
        if row:
            ids[i, : len(row)] = torch.as_tensor(row) + tokenizer.attribute_offset
            weights[i, : len(row)] = 1.0 / len(row)
    vectors = projection = None
    if tokenizer.spec.item_text_vectors:
        encoder = tokenizer.item_encoder
        vectors = torch.as_tensor(encoder.item_vectors.astype(np.float32), device=device)
        if encoder.projection is not None:
            projection = torch.as_tensor(encoder.projection, device=device)
        else:
            projection = torch.zeros((vectors.shape[1], hidden_size), device=device)
    return ComposedItems(
        tokenizer.item_offset, ids.to(device), weights.to(device), tokenizer.spec.item_id_rows, vectors, projection
    )


def item_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers holding item rows: the input embedding and the output layer when that is another module (which
    may still share the input's weight when tied: callers writing rows write a shared weight once)."""
    layers = [model.get_input_embeddings()]
    output = model.get_output_embeddings()
    if output is not None and output is not layers[0]:
        layers.append(output)
    return layers


def distinct_item_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """``item_layers`` less a layer whose weight is tied to an earlier one's: the input embedding alone when the
    output is tied to it, both when the output rows are their own. Writers of new item rows write each once."""
    layers: list[torch.nn.Module] = []
    for layer in item_layers(model):
        if all(layer.weight is not kept.weight for kept in layers):
            layers.append(layer)
    return layers


def attach(model: torch.nn.Module, tokenizer, id_dropout: float = 0.0) -> ComposedItems:
    """Compose ``model``'s item rows from their attributes from now on (input and output layers; a tied
    weight stays one parameter). Call after any direct write to the embedding (``item_init``).
    ``id_dropout``: in training, the share of items read as their content alone (``ComposedItems._kept_ids``)."""
    if not tokenizer.spec.item_attributes:
        raise ValueError("this tokenizer has no item attributes (build it with item features)")
    if attached(model):
        raise ValueError("the model's item rows are already composed from attributes")
    if id_dropout and not tokenizer.spec.item_id_rows:
        raise ValueError("--item_id_dropout needs id rows to drop: use --item_tokens id or id+semantic")
    layers = item_layers(model)
    module = composition(tokenizer, device=layers[0].weight.device, hidden_size=layers[0].weight.shape[1])
    module.id_dropout = id_dropout
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", module)
    return module


def attached(model: torch.nn.Module) -> bool:
    return parametrize.is_parametrized(model.get_input_embeddings(), "weight")


def _composition_of(model: torch.nn.Module) -> ComposedItems:
    """The ``ComposedItems`` an attached model's layers share."""
    return model.get_input_embeddings().parametrizations.weight[0]


def keep_text_projection(model: torch.nn.Module, tokenizer) -> None:
    """Before saving: the trained text map goes to the tokenizer's item encoder (saved beside it), because the
    folded model's rows already hold each trained item's text term and only a new item needs the map."""
    if attached(model) and tokenizer.spec.item_text_vectors:
        projection = _composition_of(model).text_projection
        tokenizer.item_encoder.projection = projection.detach().float().cpu().numpy()


@contextmanager
def folded(model: torch.nn.Module) -> Iterator[None]:
    """While saving: the embedding parameters hold the composed rows and the layers are plain again, so
    ``save_pretrained`` writes a stock model that scores items exactly as the trained one. Restored after."""
    if not attached(model):
        yield
        return
    layers = item_layers(model)
    module = _composition_of(model)
    originals, composed = [], []
    training, module.training = module.training, False  # every id row is part of the saved vectors
    with torch.no_grad():
        for layer in layers:
            original = layer.parametrizations.weight.original
            if all(original is not seen for seen in originals):
                originals.append(original)
                composed.append(module(original).clone())
    module.training = training
    for layer in layers:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
    raw = [original.detach().clone() for original in originals]
    try:
        with torch.no_grad():
            for original, values in zip(originals, composed):
                original.copy_(values)
        yield
    finally:
        with torch.no_grad():
            for original, values in zip(originals, raw):
                original.copy_(values)
        for layer in layers:
            parametrize.register_parametrization(layer, "weight", module)


def none_attributes(tokenizer) -> list[int]:
    """The attribute row of an item with no content: every column's ``[NONE]`` (the first of its values). Items
    a fine-tune adds from their interactions alone (``bertrec.new_items``) get it, so the table stays whole."""
    return column_offsets(tokenizer.spec.attributes)


def attribute_rows(tokenizer, features: pl.DataFrame) -> list[list[int]]:
    """Each row of ``features`` (``item_id`` plus attribute columns, ``List[String]`` or ``String``) as indices
    into the tokenizer's attribute values: values it does not know, and columns the table lacks, give the
    column's ``[NONE]``, as for a training item without that value."""
    offsets = column_offsets(tokenizer.spec.attributes)
    rows: list[list[int]] = [[] for _ in range(features.height)]
    for (column, values), offset in zip(tokenizer.spec.attributes.items(), offsets):
        lookup = {value: offset + i for i, value in enumerate(values) if i > 0}
        series = features[column] if column in features.columns else pl.Series([None] * features.height)
        for row, cell in zip(rows, series.to_list()):
            cell = [cell] if isinstance(cell, str) else (cell or [])
            known = [lookup[v] for v in dict.fromkeys(cell) if v in lookup]
            row += known or [offset]
    return rows


def known_codes(tokenizer) -> np.ndarray:
    """``[items, levels]``: the semantic-ID codes of the tokenizer's items (-1 where an item has none)."""
    spec, levels = tokenizer.spec, tokenizer.item_encoder.columns[:-1]
    starts = dict(zip(spec.attributes, column_offsets(spec.attributes)))
    codes = np.full((len(spec.items), len(levels)), -1, dtype=np.int64)
    for level, column in enumerate(levels):
        start, values = starts[column], spec.attributes[column]
        for item, row in enumerate(spec.item_attributes):
            for attribute in row:
                if start < attribute < start + len(values):  # past the column's [NONE]
                    codes[item, level] = int(values[attribute - start])
    return codes


def read_features_for(tokenizer, path) -> pl.DataFrame:
    """``path``'s item features (CSV, Parquet, JSONL, item.json; ``read_item_features``) in the columns the model
    was trained with: its attribute columns as categorical ones and its encoder's text columns as whole strings.
    A JSONL or CSV file's string columns would otherwise all read as categorical, and a title would then reach the
    text encoder as a list of one value. Columns the file lacks count as ``[NONE]`` (text: empty)."""
    from bertrec.data.item_features import read_item_features

    encoder = tokenizer.item_encoder
    codes = encoder.columns if encoder is not None else []  # semantic-ID codes come from the text, not the file
    wanted = {
        "categorical": [column for column in tokenizer.spec.attributes if column not in codes],
        "text": list(encoder.text_columns) if encoder is not None else [],
    }
    columns = read_item_features(path, categorical=[], text=[]).columns  # numeric ones too
    missing = [column for names in wanted.values() for column in names if column not in columns]
    if missing:
        logger.warning("%s has no column(s) %s: its items count as [NONE] (no text) there", path, missing)
    chosen = {role: [column for column in names if column in columns] for role, names in wanted.items()}
    return read_item_features(path, **chosen).table


@torch.no_grad()
def add_items_from_content(model: torch.nn.Module, tokenizer, features: pl.DataFrame):
    """Cold start: give items that have content but no interactions a token and an embedding row, without
    training. A new item's row is composed as a trained one is: the mean of its attribute rows, plus (for
    models with id rows) an id part it never learnt, borrowed from known items (``_new_item_rows``).
    Items the tokenizer already knows are skipped. A semantic-ID model's new items get their codes from their
    text (the text columns the model was trained with) through the encoder saved with its tokenizer.
    Returns the extended tokenizer and the new items' ids.

    ``model`` is a saved (folded) model: its item rows already hold id part + attribute mean, so the id part of
    a known item is its row minus the mean of its attribute rows.
    """
    from dataclasses import replace

    from bertrec.tokenization import EventTokenizer

    if not tokenizer.spec.item_attributes:
        raise ValueError(
            "this model reads items as ids only, so it cannot place an item it never saw; train it with "
            "--item_features to rank new items from their content"
        )
    if attached(model):
        raise ValueError("add items to a saved model (Recommender.from_pretrained), not one being trained")
    known = set(tokenizer.spec.items)
    fresh = features.filter(~pl.col("item_id").is_in(list(known))).unique("item_id", keep="first", maintain_order=True)
    encoder, neighbours, spec = tokenizer.item_encoder, None, tokenizer.spec
    if encoder is not None:  # semantic IDs and text vectors from the new items' text, by the encoder of training
        vectors = encoder.vectors(fresh)
        if encoder.columns:
            codes = encoder.codes_for(fresh["item_id"], vectors, known_codes(tokenizer))
            fresh = fresh.drop(encoder.columns, strict=False).hstack(codes.drop("item_id"))
        neighbours = encoder.neighbours(vectors, trained=len(spec.items) - spec.items_from_content)
        if encoder.item_vectors is not None:  # every item's vector, for the text term of the rows composed now
            encoder = replace(encoder, item_vectors=np.concatenate([encoder.item_vectors, vectors.astype(np.float16)]))
    new_rows = attribute_rows(tokenizer, fresh)
    extended = EventTokenizer(
        replace(
            spec,
            items=[*spec.items, *fresh["item_id"].to_list()],
            item_attributes=[*spec.item_attributes, *new_rows],
            items_from_content=spec.items_from_content + fresh.height,
            added_items_weighing=[],  # a weighing fit for the pool before these items no longer holds
        ),
        encoder,
    )
    hidden_size = model.get_input_embeddings().weight.shape[1]
    composed = composition(extended, hidden_size=hidden_size)  # known and new items alike
    model.resize_token_embeddings(extended.vocab_size, mean_resizing=False)
    first = tokenizer.item_offset + tokenizer.num_items
    for layer in item_layers(model):
        _set_new_bias(layer, tokenizer, extended, first)
    for weight in (layer.weight for layer in distinct_item_layers(model)):
        content = composed.content(weight)
        known_content, new_content = content[: tokenizer.num_items], content[tokenizer.num_items :]
        rows = new_content
        if spec.item_id_rows:
            rows = _new_item_rows(weight[tokenizer.item_offset : first], known_content, new_content, neighbours)
        weight[first:] = rows.to(weight.dtype)
    return extended, list(range(first, first + fresh.height))


def pooled_scores(
    scores: torch.Tensor, items_from_content: int, weighing: Sequence[float] | None = None
) -> torch.Tensor:
    """``scores [prompts, items]`` of trained items and of the last ``items_from_content`` items, added from
    content after training, as one ranking: each pool's scores become log-probabilities within the pool, plus
    the log of the probability the prompt gives the pool.

    The two pools' raw scores are not on one scale: a trained row's length and direction were fit to the log,
    an added row's were composed, so a raw comparison keeps new items out of every top 10 (or, scaled up, puts
    them everywhere). Within a pool the scores order items well (amazon-office: a cold target is in the top 10
    of the 241 cold items for 24% of its users). So the pools are ranked as distributions, and only how much
    each prompt gives the new pool is a choice: ``sigmoid(slope * gap + intercept)``, ``gap`` being the log
    of the new pool's summed exponentiated scores over the trained pool's (how strongly the prompt points at
    new items). ``weighing`` is ``(slope, intercept)``, fit on held-out examples by
    ``added_item_weighing.fit_weighing``; without it every prompt gives the new pool its share of the
    catalogue (slope 0), the prior that a new item is as likely as a trained one. The order inside each pool
    is unchanged, and a model without added items ranks exactly as before.
    """
    if items_from_content <= 0 or items_from_content >= scores.shape[1]:
        return scores
    trained = scores.shape[1] - items_from_content
    known, new = scores[:, :trained], scores[:, trained:]
    if weighing:
        slope, intercept = weighing
    else:
        share = items_from_content / scores.shape[1]
        slope, intercept = 0.0, math.log(share) - math.log1p(-share)
    to_new = intercept + (slope * new_pool_gap(scores, items_from_content) if slope else 0.0)
    to_new = torch.as_tensor(to_new, dtype=scores.dtype, device=scores.device).reshape(-1, 1)
    known = torch.log_softmax(known, dim=1) + torch.nn.functional.logsigmoid(-to_new)
    new = torch.log_softmax(new, dim=1) + torch.nn.functional.logsigmoid(to_new)
    return torch.cat([known, new], dim=1)


def new_pool_gap(scores: torch.Tensor, items_from_content: int) -> torch.Tensor:
    """Per prompt, the log-sum-exp of the last ``items_from_content`` items' raw scores minus the trained
    items': the log-odds a plain softmax over all items would give the new pool."""
    trained = scores.shape[1] - items_from_content
    return torch.logsumexp(scores[:, trained:], dim=1) - torch.logsumexp(scores[:, :trained], dim=1)


def _new_item_rows(
    known_rows: torch.Tensor, known_content: torch.Tensor, new_content: torch.Tensor, neighbours: torch.Tensor | None
) -> torch.Tensor:
    """New items' rows: their content plus an id part they never learnt. That is the known items' average id
    part, or, where the item's text has neighbours in the catalogue (``neighbours [new, k]``, -1: none), the
    average id part of its nearest neighbours, the row then scaled to their average length: it borrows the
    collaborative position and the score scale of the items its text is closest to. (With the average alone, a
    new item's row is about half as long as a trained one's and it almost never reaches a top 10.)"""
    id_parts = known_rows - known_content
    rows = new_content + id_parts.mean(dim=0)
    if neighbours is None:
        return rows
    found = neighbours[:, 0] >= 0
    if found.any():
        chosen = neighbours[found]
        borrowed = new_content[found] + id_parts[chosen].mean(dim=1)
        length = known_rows.norm(dim=1)[chosen].mean(dim=1, keepdim=True)
        rows[found] = borrowed / borrowed.norm(dim=1, keepdim=True).clamp(min=1e-12) * length
    return rows


def _set_new_bias(layer: torch.nn.Module, tokenizer, extended, first: int) -> None:
    """A new item's output bias (BERT's decoder): the known items' mean, its popularity prior unknown."""
    bias = getattr(layer, "bias", None)
    if bias is not None and bias.shape[0] == extended.vocab_size:
        bias[first:] = bias[tokenizer.item_offset : first].mean()
