"""Label readers for FSD50K, AudioSet, BBC SFX and generic CSVs, in the layouts those collections ship."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonify_toolkit.labels import LabelFileError, read_audioset, read_bbc, read_fsd50k, read_generic, read_labels


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_fsd50k_dev_and_eval_ground_truth(tmp_path: Path) -> None:
    dev = write(
        tmp_path / "dev.csv",
        "fname,labels,mids,split\n"
        '64760,"Electric_guitar,Guitar,Plucked_string_instrument,Musical_instrument,Music",'
        '"/m/02sgy,/m/0342h,/m/0fx80y,/m/04szw,/m/04rlf",train\n'
        '16399,"Bark,Dog,Domestic_animals_and_pets,Animal","/m/05tny_,/m/0bt9lr,/m/068hy,/m/0jbk",val\n',
    )
    evl = write(tmp_path / "eval.csv", 'fname,labels,mids\n37199,"Rain,Water","/m/06mb1,/m/0838f"\n')
    labels = read_labels(dev)
    assert labels.lookup("FSD50K.dev_audio/64760.wav") == [
        "Electric_guitar",
        "Guitar",
        "Plucked_string_instrument",
        "Musical_instrument",
        "Music",
    ]
    assert labels.lookup("16399.wav") == ["Bark", "Dog", "Domestic_animals_and_pets", "Animal"]
    assert read_fsd50k(evl).lookup("eval/37199.wav") == ["Rain", "Water"]
    assert labels.lookup("99999.wav") == []


def test_audioset_segments_with_class_index(tmp_path: Path) -> None:
    write(
        tmp_path / "class_labels_indices.csv",
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n74,/m/0bt9lr,"Dog"\n288,/m/06mb1,"Rain"\n300,/m/0k4j,"Car"\n',
    )
    seg = write(
        tmp_path / "balanced_train_segments.csv",
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/0bt9lr"\n'
        '-0RWZT-miFs, 420.000, 430.000, "/m/06mb1"\n'
        'YabcdEFGh_1, 0.000, 10.000, "/m/0k4j,/m/unknown"\n',
    )
    labels = read_labels(seg)
    assert labels.lookup("audio/Y--PJHxphWEs.wav") == ["Speech", "Dog"]  # the "Y" prefix of downloaders
    assert labels.lookup("-0RWZT-miFs_420.000_430.000.flac") == ["Rain"]  # YTID_start_end naming
    assert labels.lookup("YabcdEFGh_1.wav") == ["Car", "/m/unknown"]  # an id starting with Y; unknown mid kept
    assert len(read_audioset(seg)) == 3


def test_audioset_without_class_index_is_a_clear_error(tmp_path: Path) -> None:
    seg = write(tmp_path / "eval_segments.csv", "# YTID, start_seconds, end_seconds, positive_labels\n")
    with pytest.raises(LabelFileError, match=r"class_labels_indices\.csv"):
        read_labels(seg)


def test_bbc_sound_effects_csv(tmp_path: Path) -> None:
    bbc = write(
        tmp_path / "BBCSoundEffects.csv",
        '"location","description","secs","category","CDNumber","CDName","tracknum"\n'
        '"07070143.wav","Rain - heavy rain on a tin roof.",188,"Weather: Rain","EC 1 AW","Ambience",5\n'
        '"07070144.wav","Dog barking in the distance.",30,"Animals","EC 2","Dogs",1\n',
    )
    labels = read_labels(bbc)
    assert labels.lookup("bbc/07070143.wav") == ["Rain - heavy rain on a tin roof.", "Weather: Rain"]
    assert read_bbc(bbc).lookup("07070144.wav") == ["Dog barking in the distance.", "Animals"]


def test_generic_path_label_csv_with_and_without_header(tmp_path: Path) -> None:
    with_header = write(tmp_path / "a.csv", "path,label\nrain/r1.wav,Rain\nrain/r1.wav,Water\ndogs/d.flac,Bark;Dog\n")
    labels = read_labels(with_header)
    assert labels.lookup("rain/r1.wav") == ["Rain", "Water"]
    assert labels.lookup("dogs/d.flac") == ["Bark", "Dog"]
    bare = write(tmp_path / "b.csv", "x/y.wav,Siren\n")
    assert read_generic(bare).lookup("x/y.wav") == ["Siren"]
    assert read_labels(bare).lookup("y.wav") == ["Siren"]  # matched by file name after re-foldering


def test_unknown_or_missing_label_files(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="not found"):
        read_labels(tmp_path / "missing.csv")
    with pytest.raises(LabelFileError, match="unknown label format"):
        read_labels(write(tmp_path / "one_column.csv", "just\none\ncolumn\n"))


def test_refoldered_files_match_only_unambiguous_names(tmp_path: Path) -> None:
    labels = read_labels(write(tmp_path / "l.csv", "path,label\nold/a/1.wav,One\nold/b/1.wav,Uno\nold/c/2.wav,Two\n"))
    assert labels.lookup("new/2.wav") == ["Two"]
    assert labels.lookup("new/2.flac") == ["Two"]  # re-encoded: same stem
    assert labels.lookup("new/1.wav") == []  # two candidates: refuse to guess
    assert labels.lookup("old/a/1.wav") == ["One"]


def test_short_rows_are_skipped_not_fatal(tmp_path: Path) -> None:
    fsd = read_labels(write(tmp_path / "dev.csv", "fname,labels,mids,split\n123\n,\n456,Dog,/m/0bt9lr,train\n"))
    assert fsd.lookup("456.wav") == ["Dog"] and fsd.lookup("123.wav") == []
    bbc = read_labels(write(tmp_path / "bbc.csv", "location,description,category\n,orphan,X\nb.wav\n"))
    assert bbc.lookup("b.wav") == [] and len(bbc) == 1
