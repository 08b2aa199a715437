"""Leakage-free splits: grouping, stratification, protocols, policy validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from braintumor.constants import CLASS_NAMES
from braintumor.integrity.policy import IntegrityPolicy, IntegrityPolicyError
from braintumor.integrity.splits import SPLIT_COLUMNS, SplitError, make_splits, split_counts


def _manifest(labels, origins=None, sizes=None) -> pd.DataFrame:
    n = len(labels)
    origins = origins or ["training"] * n
    sizes = sizes or [256] * n
    return pd.DataFrame(
        {
            "path": [
                f"{o}/{lab}/img{k:04d}.jpg"
                for k, (o, lab) in enumerate(zip(origins, labels, strict=True))
            ],
            "split": origins,
            "label": labels,
            "width": sizes,
            "height": sizes,
        }
    )


def _balanced(per_class: int = 100) -> pd.DataFrame:
    return _manifest([c for c in CLASS_NAMES for _ in range(per_class)])


def test_resplit_is_stratified_deterministic_and_seeded():
    manifest = _balanced(100)
    policy = IntegrityPolicy(val_fraction=0.15, test_fraction=0.2, seed=3)
    splits = make_splits(manifest, np.arange(len(manifest)), policy)
    assert list(splits.columns) == list(SPLIT_COLUMNS)
    counts = split_counts(splits)
    assert (counts["test"] == 20).all() and (counts["val"] == 15).all()
    assert (counts["train"] == 65).all()
    assert (splits["status"] == "kept").all() and (splits["reason"] == "unique").all()
    assert (splits["protocol"] == "resplit").all()
    assert make_splits(manifest, np.arange(len(manifest)), policy).equals(splits)
    other = make_splits(manifest, np.arange(len(manifest)), policy.model_copy(update={"seed": 4}))
    assert (other["split"] != splits["split"]).any()


def test_same_images_get_same_splits_whatever_the_row_order():
    manifest = _balanced(50)
    ids = pd.Series(np.arange(len(manifest)), index=manifest.index)
    first = make_splits(manifest, ids, IntegrityPolicy()).set_index("path")["split"]
    shuffled = manifest.sample(frac=1, random_state=0)
    second = make_splits(shuffled, ids.loc[shuffled.index], IntegrityPolicy())
    assert second.set_index("path")["split"].loc[first.index].tolist() == first.tolist()


def test_a_cluster_keeps_its_largest_image_and_stays_in_one_split():
    manifest = _manifest(["glioma"] * 23, sizes=[256] * 20 + [128, 512, 256])
    ids = np.r_[np.arange(20), [20, 20, 20]]
    splits = make_splits(manifest, ids, IntegrityPolicy())
    cluster = splits[splits["cluster_id"] == 20]
    assert cluster["split"].nunique() == 1
    kept = cluster[cluster["status"] == "kept"]
    assert kept["path"].tolist() == [manifest["path"][21]]  # the 512 px copy
    assert kept["reason"].iloc[0] == "representative of cluster 20 (3 images)"
    redundant = cluster[cluster["status"] == "redundant"]
    assert len(redundant) == 2
    assert (redundant["reason"] == f"same picture as {manifest['path'][21]}").all()
    assert (cluster["cluster_size"] == 3).all()


def test_keep_all_copies_when_asked():
    manifest = _manifest(["glioma"] * 6)
    splits = make_splits(manifest, [0, 0, 0, 1, 2, 3], IntegrityPolicy(keep_one_per_cluster=False))
    assert (splits["status"] == "kept").all()
    assert splits[splits["cluster_id"] == 0]["split"].nunique() == 1


def test_cross_class_clusters_are_quarantined_whole_and_listed():
    manifest = _manifest(["glioma", "meningioma", "meningioma"] + ["pituitary"] * 10)
    ids = [0, 0, 0, *range(1, 11)]
    splits = make_splits(manifest, ids, IntegrityPolicy())
    conflict = splits[splits["cluster_id"] == 0]
    assert (conflict["status"] == "quarantined").all() and (conflict["split"] == "none").all()
    assert conflict["reason"].str.contains("label conflict").all()
    assert conflict["reason"].str.contains("glioma\\+meningioma").all()


def test_majority_keeps_the_most_frequent_label():
    manifest = _manifest(["glioma", "meningioma", "meningioma"] + ["pituitary"] * 10)
    ids = [0, 0, 0, *range(1, 11)]
    splits = make_splits(manifest, ids, IntegrityPolicy(cross_class="majority"))
    conflict = splits[splits["cluster_id"] == 0].set_index("label")
    assert conflict.loc["glioma", "status"] == "quarantined"
    assert "kept the majority label meningioma" in conflict.loc["glioma", "reason"]
    meningioma = splits[(splits["cluster_id"] == 0) & (splits["label"] == "meningioma")]
    assert sorted(meningioma["status"]) == ["kept", "redundant"]
    # a tie quarantines the whole cluster
    tie = make_splits(manifest, [0, 0, 1, *range(2, 12)], IntegrityPolicy(cross_class="majority"))
    assert (tie[tie["cluster_id"] == 0]["status"] == "quarantined").all()


def test_official_removes_every_testing_image_with_a_training_twin():
    labels = ["glioma"] * 40 + ["glioma"] * 10
    origins = ["training"] * 40 + ["testing"] * 10
    manifest = _manifest(labels, origins)
    # testing images 40..44 are copies of training images 0..4; 45 and 46 copy each other
    ids = [*range(40), 0, 1, 2, 3, 4, 45, 45, 47, 48, 49]
    splits = make_splits(manifest, ids, IntegrityPolicy(protocol="official"))
    testing = splits[splits["origin_split"] == "testing"].set_index("path")
    leaked = testing.loc[manifest["path"][40:45]]
    assert (leaked["status"] == "redundant").all() and (leaked["split"] != "test").all()
    assert leaked["reason"].str.startswith("removed from Testing").all()
    test = splits[(splits["split"] == "test") & (splits["status"] == "kept")]
    assert len(test) == 4  # 45/46 collapse to one, plus 47, 48, 49
    assert (test["origin_split"] == "testing").all()
    # no test cluster has a training member
    training_clusters = set(splits[splits["origin_split"] == "training"]["cluster_id"])
    assert not set(splits[splits["split"] == "test"]["cluster_id"]) & training_clusters
    assert {"train", "val"} == set(splits[splits["origin_split"] == "training"]["split"])


def test_official_needs_a_testing_split():
    with pytest.raises(SplitError, match="use protocol 'resplit'"):
        make_splits(_balanced(5), np.arange(20), IntegrityPolicy(protocol="official"))


def test_clusters_can_come_as_a_table_and_bad_ones_are_refused():
    manifest = _balanced(5)
    table = pd.DataFrame({"path": manifest["path"][::-1], "cluster_id": np.arange(20)[::-1]})
    splits = make_splits(manifest, table)
    assert splits.set_index("path").loc[manifest["path"], "cluster_id"].tolist() == list(range(20))
    with pytest.raises(SplitError, match="no cluster id for 1 images"):
        make_splits(manifest, table.iloc[1:])
    with pytest.raises(SplitError, match="one cluster id per manifest row"):
        make_splits(manifest, np.arange(19))
    with pytest.raises(SplitError, match="lacks the columns"):
        make_splits(manifest.drop(columns="label"), np.arange(20))
    with pytest.raises(SplitError, match="lists a path twice"):
        make_splits(pd.concat([manifest, manifest.iloc[:1]]), np.arange(21))


def test_policy_from_params_validates_with_actionable_messages():
    assert IntegrityPolicy.from_dict(None) == IntegrityPolicy()
    policy = IntegrityPolicy.from_dict({"protocol": "official", "seed": 7})
    assert policy.protocol == "official" and policy.hamming_threshold == 8
    assert policy.min_correlation == pytest.approx(0.97)
    with pytest.raises(IntegrityPolicyError, match="hamming_treshold"):
        IntegrityPolicy.from_dict({"hamming_treshold": 6})
    with pytest.raises(IntegrityPolicyError, match="protocol"):
        IntegrityPolicy.from_dict({"protocol": "kaggle"})
    with pytest.raises(IntegrityPolicyError, match="less than 10% for training"):
        IntegrityPolicy.from_dict({"val_fraction": 0.5, "test_fraction": 0.45})


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 400),
    st.integers(0, 2**31 - 1),
    st.booleans(),
    st.sampled_from([0.1, 0.15, 0.2]),
)
def test_property_no_cluster_straddles_splits_and_classes_stay_proportional(
    n_clusters, seed, keep_one, test_fraction
):
    rng = np.random.default_rng(seed)
    n_images = int(rng.integers(n_clusters, 3 * n_clusters + 1))
    ids = np.r_[np.arange(n_clusters), rng.integers(0, n_clusters, n_images - n_clusters)]
    cluster_label = rng.choice(CLASS_NAMES, n_clusters, p=[0.3, 0.3, 0.15, 0.25])
    labels = cluster_label[ids].tolist()
    # a few clusters carry a second label (label conflicts)
    for k in rng.choice(n_images, max(1, n_images // 50), replace=False):
        labels[k] = str(rng.choice(CLASS_NAMES))
    manifest = _manifest(labels, sizes=rng.integers(100, 600, n_images).tolist())
    policy = IntegrityPolicy(
        test_fraction=test_fraction, val_fraction=0.15, seed=seed, keep_one_per_cluster=keep_one
    )
    splits = make_splits(manifest, ids, policy)

    usable = splits[splits["status"] != "quarantined"]
    assert (usable.groupby("cluster_id")["split"].nunique() == 1).all()
    assert set(usable["split"]) <= {"train", "val", "test"}
    assert (splits[splits["status"] == "quarantined"]["split"] == "none").all()
    # every cluster with one label keeps at least one image; conflicts keep none
    kept = splits[splits["status"] == "kept"]
    n_labels = splits.groupby("cluster_id")["label"].nunique()
    assert set(kept["cluster_id"]) == set(n_labels.index[n_labels == 1])
    if keep_one:
        assert (kept.groupby("cluster_id").size() == 1).all()

    # class proportions per split: within one cluster of the target share
    biggest = kept.groupby("cluster_id").size().max()
    for _, rows in kept.groupby("label"):
        n = len(rows)
        for name, share in (("test", test_fraction), ("val", 0.15)):
            got = int((rows["split"] == name).sum())
            assert abs(got - round(share * n)) <= biggest + 1, (name, got, n)


def _two_sources() -> tuple[pd.DataFrame, np.ndarray]:
    """Source a: 40 images per class; source b: 10 per class, of which the first 3 of each
    class are copies of a's images (one cluster each) and the rest are b's own."""
    a = _manifest([c for c in CLASS_NAMES for _ in range(40)]).assign(source="a")
    b = _manifest([c for c in CLASS_NAMES for _ in range(10)]).assign(source="b")
    b["path"] = "b/" + b["path"]
    manifest = pd.concat([a, b], ignore_index=True)
    clusters = np.arange(len(manifest))
    for k in range(len(CLASS_NAMES)):
        for j in range(3):
            clusters[len(a) + k * 10 + j] = k * 40 + j  # b's copy joins a's cluster
    return manifest, clusters


def test_leave_source_out_tests_on_the_held_out_source_minus_its_copies():
    manifest, clusters = _two_sources()
    policy = IntegrityPolicy(protocol="leave-source-out", holdout_source="b")
    splits = make_splits(manifest, clusters, policy)
    test = splits[(splits["split"] == "test") & (splits["status"] == "kept")]
    assert set(test["source"]) == {"b"}
    assert len(test) == 4 * 7  # b's own images only
    trained = splits[splits["split"].isin(["train", "val"]) & (splits["status"] == "kept")]
    assert set(trained["source"]) == {"a"}
    assert len(trained) == 4 * 40
    copies = splits[splits["reason"].str.startswith("removed from held-out source b")]
    assert len(copies) == 12 and (copies["status"] == "redundant").all()
    assert (copies["source"] == "b").all() and (copies["split"] != "test").all()
    assert set(splits["protocol"]) == {"leave-source-out"}
    # the other way round: a's copies of b's images leave a's test split
    other = make_splits(manifest, clusters, policy.model_copy(update={"holdout_source": "a"}))
    other_test = other[(other["split"] == "test") & (other["status"] == "kept")]
    assert set(other_test["source"]) == {"a"} and len(other_test) == 4 * 37


def test_leave_source_out_errors_say_what_to_change():
    manifest, clusters = _two_sources()
    with pytest.raises(SplitError, match=r"held-out source 'c'.*sources are a, b"):
        make_splits(
            manifest, clusters, IntegrityPolicy(protocol="leave-source-out", holdout_source="c")
        )
    only_b = manifest[manifest["source"] == "b"].reset_index(drop=True)
    with pytest.raises(SplitError, match="needs another source"):
        make_splits(
            only_b,
            np.arange(len(only_b)),
            IntegrityPolicy(protocol="leave-source-out", holdout_source="b"),
        )
    with pytest.raises(IntegrityPolicyError, match="needs the source to hold out"):
        IntegrityPolicy.from_dict({"protocol": "leave-source-out"})
    with pytest.raises(IntegrityPolicyError, match="only used by protocol leave-source-out"):
        IntegrityPolicy.from_dict({"protocol": "resplit", "holdout_source": "b"})


def test_unseen_by_leaves_out_images_another_split_trained_on_and_their_copies():
    from braintumor.integrity.splits import trained_paths, unseen_by

    manifest = _balanced(20)
    clusters = np.arange(len(manifest))
    clusters[1] = clusters[0]  # a pair of copies
    old = make_splits(manifest, clusters, IntegrityPolicy(seed=1))
    new = make_splits(manifest, clusters, IntegrityPolicy(seed=2))
    seen = trained_paths(old)
    assert seen == set(old.loc[old["split"].isin(["train", "val"]), "path"])
    test = new.loc[(new["split"] == "test") & (new["status"] == "kept"), "path"].tolist()
    mask = unseen_by(new, test, seen)
    old_split = old.set_index("path")["split"]
    assert all((old_split[p] == "test") == unseen for p, unseen in zip(test, mask, strict=True))
    assert 0 < mask.sum() < len(test)
    # a copy counts as the image: the representative kept in `new` is unseen only if its
    # twin was not trained on either
    twin_seen = {manifest["path"][1]}
    assert not unseen_by(new, [manifest["path"][0]], twin_seen)[0]
    assert unseen_by(new, test, set()).all()
    with pytest.raises(SplitError, match="not in the splits table"):
        unseen_by(new, ["elsewhere.jpg"], seen)
