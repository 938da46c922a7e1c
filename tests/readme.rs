//! README's key table follows the program: every main-screen action has a row under its
//! default key, so a key added to the program without documentation fails here.

#[test]
fn readme_key_table_has_every_main_screen_action() {
    let readme = include_str!("../README.md");
    let cells: Vec<String> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| key | does |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| row.split('|').nth(1).map(|c| c.trim().to_string()))
        .collect();
    assert!(cells.len() > 10, "README's key table not found");
    for (action, key) in lama_tui::app::config::ACTIONS {
        let key = key.to_string();
        let listed = cells
            .iter()
            .any(|cell| cell.split(['/', ',']).any(|t| t.trim() == key));
        assert!(
            listed,
            "README's key table has no row for `{key}` ({action})"
        );
    }
}
