//! A missing weights file: the plugin still activates, passes notes through, generates
//! nothing, and says why. (Its own test binary: it sets CONTINUO_MODEL_DIR for the process.)

mod host;

use host::Session;

#[test]
fn a_missing_weights_file_leaves_the_plugin_passing_notes_through_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("broken-model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/models/default/config.json"),
        model.join("config.json"),
    )
    .unwrap();
    std::env::set_var("CONTINUO_MODEL_DIR", &model);

    let mut s = Session::new(48_000.0, 512);
    s.play_triad_for_a_bar();
    s.run_until(16.0);
    let ons: Vec<_> = s.out.iter().filter(|o| o.on).collect();
    assert_eq!(ons.len(), 3, "only the triad passes through: {:?}", s.out);
    assert!(ons.iter().all(|o| o.sample == 0));
    assert_eq!(s.out.iter().filter(|o| !o.on).count(), 3);

    // The worker reports asynchronously; give it a moment.
    let t = std::time::Instant::now();
    let status = loop {
        let state = host::state_json(&s.save_state());
        let status = state["fields"]["session"].to_string();
        if status.contains("error") || t.elapsed() > std::time::Duration::from_secs(30) {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        status.contains("weights file not found") && status.contains("model.safetensors"),
        "{status}"
    );
}
