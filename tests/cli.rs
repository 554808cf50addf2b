//! The `continuo` command: plain errors with non-zero exits, and a generate run end to end.

mod common;

use std::process::Command;

fn continuo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_continuo"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn generate_writes_midi_and_a_piano_roll() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idea.mid");
    let png = dir.path().join("idea.png");
    let model = common::tiny_model_dir().display().to_string();
    let primer = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/primers/a-minor-riff.mid"
    );
    let (ok, stdout, stderr) = continuo(&[
        "generate",
        "--model",
        &model,
        "--primer",
        primer,
        "--bars",
        "2",
        "--variations",
        "2",
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
        "--png",
        png.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("idea.mid") && stdout.contains("idea-2.mid"),
        "{stdout}"
    );
    let song = continuo::midi_file::read_midi(&out).unwrap();
    assert!(!song.melodic.notes.is_empty());
    assert!(dir.path().join("idea-2.mid").is_file());
    let png_bytes = std::fs::read(&png).unwrap();
    assert_eq!(&png_bytes[1..4], b"PNG");
}

#[test]
fn a_missing_primer_is_named_with_a_non_zero_exit() {
    let model = common::tiny_model_dir().display().to_string();
    let (ok, _, stderr) = continuo(&[
        "generate",
        "--model",
        &model,
        "--primer",
        "/no/such/primer.mid",
        "--out",
        "/tmp/x.mid",
    ]);
    assert!(!ok);
    assert!(stderr.contains("/no/such/primer.mid"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}

#[test]
fn eval_of_a_primer_folder_prints_the_in_kind_table_by_role() {
    let model = common::tiny_model_dir().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    for name in ["bass--walking-F", "chords--gospel-Eb", "lead--blues-G"] {
        std::fs::copy(
            format!(
                "{}/examples/dev-primers/{name}.mid",
                env!("CARGO_MANIFEST_DIR")
            ),
            dir.path().join(format!("{name}.mid")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("no-role.mid"), b"MThd").unwrap();
    let folder = dir.path().display().to_string();
    let args = [
        "eval",
        "--model",
        &model,
        "--primers",
        &folder,
        "--seeds",
        "2",
    ];
    let (ok, stdout, stderr) = continuo(&[&args[..], &["--json"]].concat());
    assert!(ok, "{stderr}");
    assert!(stderr.contains("no-role.mid"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["primers"], 3, "{v}");
    for role in ["bass", "chords", "lead"] {
        assert_eq!(v["by_role"][role]["continuations"], 2, "{v}");
    }
    let overall = v["overall"]["in_kind"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&overall), "{v}");
    let (ok, table, stderr) = continuo(&args);
    assert!(ok, "{stderr}");
    assert!(
        table.contains("overall") && table.contains("register"),
        "{table}"
    );
}

#[test]
fn a_texture_value_that_is_no_bin_is_explained() {
    let (ok, _, stderr) = continuo(&["generate", "--register", "basement", "--out", "/tmp/x.mid"]);
    assert!(!ok);
    assert!(
        stderr.contains("basement") && stderr.contains("low, bass"),
        "{stderr}"
    );
}

#[test]
fn fine_tuning_refuses_a_flag_that_contradicts_the_base_model() {
    let base = common::tiny_model_dir().display().to_string();
    let data = common::fixtures().display().to_string();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("m").display().to_string();
    // One step from the tiny base with one flag that contradicts it.
    let train_from_base = |flag: &str, value: &str| {
        let args = ["train", "--data", &data, "--from", &base, flag, value];
        continuo(&[&args[..], &["--out", &out, "--steps", "1"]].concat())
    };
    let (ok, _, stderr) = train_from_base("--d-model", "128");
    assert!(!ok);
    assert!(
        stderr.contains("--d-model 128") && stderr.contains("--d-model 64"),
        "{stderr}"
    );
    // A shorter context would drop positions the base learned (a longer one extends it).
    let (ok, _, stderr) = train_from_base("--seq-len", "64");
    assert!(!ok);
    assert!(
        stderr.contains("--seq-len 64") && stderr.contains("only a longer context"),
        "{stderr}"
    );
}

#[test]
fn a_one_file_folder_trains_and_says_how_it_is_validated() {
    let data = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::fixtures().join("oneills_01.mid"),
        data.path().join("one.mid"),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("m").display().to_string();
    let (ok, _, stderr) = continuo(&[
        "train",
        "--data",
        &data.path().display().to_string(),
        "--out",
        &out,
        "--d-model",
        "16",
        "--layers",
        "1",
        "--heads",
        "1",
        "--ff",
        "32",
        "--seq-len",
        "32",
        "--steps",
        "1",
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("only 1 usable file"), "{stderr}");
}

#[test]
fn a_missing_model_folder_is_named() {
    let (ok, _, stderr) = continuo(&[
        "generate",
        "--model",
        "/no/such/model",
        "--out",
        "/tmp/x.mid",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("/no/such/model") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn bad_flag_values_are_explained() {
    let (ok, _, stderr) = continuo(&["generate", "--temperature=0", "--out", "/tmp/x.mid"]);
    assert!(!ok);
    assert!(stderr.contains("above 0"), "{stderr}");
    let (ok, _, stderr) = continuo(&[
        "generate",
        "--key",
        "H minor",
        "--out",
        "/tmp/x.mid",
        "--model",
        &common::tiny_model_dir().display().to_string(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("H minor"), "{stderr}");
    let (ok, _, stderr) = continuo(&[
        "train",
        "--data",
        "/no/such/folder",
        "--out",
        "/tmp/m",
        "--steps",
        "1",
    ]);
    assert!(!ok);
    assert!(stderr.contains("/no/such/folder"), "{stderr}");
}

#[test]
fn eval_prints_the_required_json_fields() {
    let model = common::tiny_model_dir().display().to_string();
    let data = common::fixtures().display().to_string();
    let (ok, stdout, stderr) = continuo(&[
        "eval",
        "--model",
        &model,
        "--data",
        &data,
        "--json",
        "--primers",
        "4",
        "--bars",
        "2",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for k in [
        "nll_per_token",
        "nll_per_note",
        "key_agreement",
        "key_agreement_real",
        "pitch_in_scale",
        "pitch_in_scale_real",
        "empty_beat_rate",
        "notes_per_beat",
        "polyphony",
        "n_files",
        "n_primers",
    ] {
        assert!(
            v.get(k).is_some_and(|x| x.is_number()),
            "{k} missing in {v}"
        );
    }
    assert!(v["nll_per_note"].as_f64().unwrap() > v["nll_per_token"].as_f64().unwrap());
}

#[test]
fn eval_infill_reports_the_context_it_heard_and_refuses_a_window_beyond_the_model() {
    let model = common::tiny_model_dir().display().to_string();
    let data = common::fixtures().display().to_string();
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", &model, "--data", &data, "--json"];
        args.extend_from_slice(&["--primers", "1", "--bars", "1"]);
        args.extend_from_slice(extra);
        continuo(&args)
    };
    let (ok, stdout, stderr) = eval(&["--infill", "--context-bars", "2", "--window", "64"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["infill_context_bars"], 2, "{v}");
    assert!(v["infill_repeat_reach"]["reach"].is_array(), "{v}");
    assert_eq!(v["infill"].as_array().map(Vec::len), Some(2), "{v}");
    let (ok, _, stderr) = eval(&["--window", "100000"]);
    assert!(!ok);
    assert!(
        stderr.contains("--window 100000") && stderr.contains("context"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every note of a file as (start tick, pitch, velocity, duration ticks), sorted.
fn notes_of(path: &std::path::Path) -> Vec<(i64, u8, u8, i64)> {
    let song = continuo::midi_file::read_midi(path).unwrap();
    let tpb = song.ticks_per_beat as f64;
    let mut v: Vec<_> = song
        .melodic
        .notes
        .iter()
        .map(|n| {
            let t = |b: f64| (b * tpb).round() as i64;
            (t(n.start), n.pitch, n.velocity, t(n.duration))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn bars_to_fill_regenerates_those_bars_and_keeps_every_other_bar() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model_dir().display().to_string();
    let idea = dir.path().join("idea.mid");
    let primer = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/primers/a-minor-riff.mid"
    );
    let (ok, _, stderr) = continuo(&[
        "generate",
        "--model",
        &model,
        "--primer",
        primer,
        "--bars",
        "4",
        "--with-primer",
        "--out",
        idea.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let idea2 = dir.path().join("idea2.mid");
    let mut changed = false;
    for seed in ["1", "2", "3"] {
        let (ok, stdout, stderr) = continuo(&[
            "generate",
            "--model",
            &model,
            "--infill",
            idea.to_str().unwrap(),
            "--bars-to-fill",
            "3..4",
            "--seed",
            seed,
            "--out",
            idea2.to_str().unwrap(),
        ]);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("bars 3..4"), "{stdout}");
        let bytes = std::fs::read(&idea).unwrap();
        let tpb = continuo::midi_file::parse_midi(&bytes, &idea)
            .unwrap()
            .ticks_per_beat as i64;
        let bar = 4 * tpb;
        let (from, to) = (2 * bar, 4 * bar);
        let outside = |v: Vec<(i64, u8, u8, i64)>| -> Vec<_> {
            v.into_iter().filter(|n| n.0 < from || n.0 >= to).collect()
        };
        let (before, after) = (notes_of(&idea), notes_of(&idea2));
        assert_eq!(
            outside(before.clone()),
            outside(after.clone()),
            "seed {seed}"
        );
        let inside = |v: &[(i64, u8, u8, i64)]| -> Vec<_> {
            v.iter()
                .filter(|n| n.0 >= from && n.0 < to)
                .copied()
                .collect()
        };
        // The new notes start in bars 3–4 and end by bar 5's line.
        assert!(inside(&after).iter().all(|n| n.0 + n.3 <= to));
        changed |= inside(&before) != inside(&after);
    }
    assert!(changed, "three seeds never changed bars 3..4");
    // A bad range is explained.
    let (ok, _, stderr) = continuo(&[
        "generate",
        "--model",
        &model,
        "--infill",
        idea.to_str().unwrap(),
        "--bars-to-fill",
        "4..2",
        "--out",
        idea2.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("last ≥ first"), "{stderr}");
}
