//! Screens rendered with ratatui's TestBackend, driven through `update` exactly as the app
//! drives them, compared with committed insta snapshots. Plus: the drawn QR code decodes
//! back to the code printed beneath it.

mod common;

use crossterm::event::{KeyCode, KeyModifiers};
use lama_tui::app::runtime::{
    ContactView, Event, IdentityInfo, MessageView, NewInvite, Paired, PeerState, Role,
};
use lama_tui::domain::identity::LocalIdentity;
use lama_tui::domain::{Channel, Contact};
use lama_tui::ui::state::{Action, State};
use lama_tui::ui::update::update;
use lama_tui::ui::view::render;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

const NOW: u64 = 1_800_000_000;

use common::ident;

fn me(role: Role) -> (LocalIdentity, IdentityInfo) {
    let i = ident(1, "node-demo@lama.local");
    let info = IdentityInfo {
        role,
        name: i.person.name.clone(),
        person_id: i.person_id().to_string(),
        instance_id: i.instance_id().to_string(),
        endpoint: (role == Role::Node).then(|| "ws://localhost:8765".to_string()),
    };
    (i, info)
}

fn draw(s: &State, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(s, f)).unwrap();
    t
}

fn key(s: &mut State, c: KeyCode) {
    update(s, Action::Key(c, KeyModifiers::NONE));
}

fn typed(s: &mut State, text: &str) {
    for ch in text.chars() {
        key(s, KeyCode::Char(ch));
    }
}

/// `contact`, linked and caught up.
fn connected(contact: Contact) -> ContactView {
    ContactView {
        contact,
        state: PeerState::Connected,
        last_error: None,
        last_seen: Some(NOW),
        verification: "1234 5678 9012".into(),
        behind: Some(0),
        refused_us: None,
    }
}

fn chat_state() -> State {
    let (me_id, info) = me(Role::Node);
    let alice = ident(10, "demo@lama.local");
    let mut s = State::new(info, NOW);
    let contact = Contact {
        person: alice.person.clone(),
        instances: vec![alice.instance.clone()],
        endpoints: vec![],
        profile: None,
        replica: false,
        replica_for: false,
        via: lama_tui::domain::Via::Invite,
        added_at: NOW,
        endpoint_notes: vec![],
        vouched_by: vec![],
    };
    update(&mut s, Action::Contacts(vec![connected(contact)]));
    let ch = lama_tui::net::pairing::direct_channel_id(&me_id.person_id(), &alice.person_id());
    let mut members = vec![me_id.person_id().to_string(), alice.person_id().to_string()];
    members.sort();
    update(
        &mut s,
        Action::Channels(vec![
            (
                Channel {
                    id: ch.clone(),
                    name: "demo@lama.local".into(),
                    members,
                    created_at: NOW,
                },
                0,
            ),
            (
                Channel {
                    id: "g-00112233445566778899aabbccddeeff".into(),
                    name: "team".into(),
                    members: vec![],
                    created_at: NOW,
                },
                3,
            ),
        ]),
    );
    let msg = |i: u64, who: &LocalIdentity, text: &str| MessageView {
        channel: ch.clone(),
        entry: format!("{i:064}"),
        author: who.person_id().to_string(),
        author_name: who.person.name.clone(),
        ts: NOW * 1000 - 86_400_000 + i * 3_600_000,
        text: Some(text.into()),
        kind: "text",
    };
    let msgs = vec![
        msg(1, &alice, "hi node, are you there?"),
        msg(2, &me_id, "yes, paired and connected"),
        msg(30, &alice, "a new day\nwith two lines"),
    ];
    update(&mut s, Action::History(ch.clone(), msgs));
    update(
        &mut s,
        Action::Runtime(Event::Synced {
            person_id: alice.person_id().to_string(),
        }),
    );
    s
}

#[test]
fn startup_screen() {
    let (_, info) = me(Role::Node);
    let s = State::new(info, NOW);
    insta::assert_snapshot!(draw(&s, 100, 30).backend());
}

#[test]
fn chat_with_messages_and_composer() {
    let mut s = chat_state();
    typed(&mut s, "typing a reply");
    insta::assert_snapshot!(draw(&s, 100, 30).backend());
}

#[test]
fn narrow_terminal_says_so() {
    let s = chat_state();
    insta::assert_snapshot!(draw(&s, 60, 20).backend());
}

#[test]
fn help_popup() {
    let mut s = chat_state();
    key(&mut s, KeyCode::Tab); // composer -> contacts
    key(&mut s, KeyCode::Char('?'));
    insta::assert_snapshot!(draw(&s, 100, 30).backend());
}

#[test]
fn contact_details() {
    let mut s = chat_state();
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char('i'));
    insta::assert_snapshot!(draw(&s, 100, 30).backend());
}

fn network_view() -> lama_tui::app::runtime::NetView {
    use lama_tui::app::runtime::{ContactNet, EndpointView, NetView, SelfNet};
    use lama_tui::domain::{EndpointNote, EndpointSource as Src, EndpointState as St, Reach};
    let ep = |url: &str, source, learned_at, state, stale_since| EndpointView {
        note: EndpointNote {
            url: url.into(),
            source,
            learned_at,
            stale_since,
        },
        state,
        last_ok: None,
        rtt_ms: None,
        last_error: None,
        next_retry_at: None,
    };
    let id = |n: u8| format!("{n:02x}").repeat(32);
    NetView {
        me: SelfNet {
            role: Role::Node,
            listening: Some("127.0.0.1:8765".into()),
            urls: vec![("ws://localhost:8765".into(), Reach::ThisMachine)],
            home_node: None,
            discovery: "local",
        },
        contacts: vec![
            ContactNet {
                person_id: id(1),
                name: "demo@lama.local".into(),
                state: PeerState::Connected,
                last_seen: Some(NOW),
                endpoints: vec![
                    EndpointView {
                        last_ok: Some(NOW - 60),
                        rtt_ms: Some(3),
                        ..ep("ws://192.168.1.20:8765", Src::Discovery, NOW - 70, St::Connected, None)
                    },
                    ep(
                        "ws://192.168.1.20:40111",
                        Src::Invitation,
                        NOW - 2 * 86_400,
                        St::Stale,
                        Some(NOW - 70),
                    ),
                ],
            },
            ContactNet {
                person_id: id(2),
                // Untrusted text: escapes and a bidi override never reach the terminal.
                name: "bob\u{1b}[2J\u{202e}@lama.local".into(),
                state: PeerState::Offline,
                last_seen: None,
                endpoints: vec![EndpointView {
                    last_error: Some(
                        "cannot reach ws://bob.example.org:8765: IO error: Connection refused (os error 111)"
                            .into(),
                    ),
                    next_retry_at: Some(NOW + 12),
                    ..ep("ws://bob.example.org:8765", Src::Card, NOW - 3600, St::Waiting, None)
                }],
            },
            ContactNet {
                person_id: id(3),
                name: "carol@lama.local".into(),
                state: PeerState::Offline,
                last_seen: None,
                endpoints: vec![],
            },
        ],
    }
}

fn network_state(w: u16, h: u16) -> State {
    let mut s = chat_state();
    update(&mut s, Action::Resize(w, h));
    key(&mut s, KeyCode::Tab); // leave the composer
    let fx = update(&mut s, Action::Key(KeyCode::Char('n'), KeyModifiers::NONE));
    assert_eq!(fx, vec![lama_tui::ui::state::Effect::LoadNetwork]);
    update(&mut s, Action::Network(Box::new(network_view())));
    s
}

#[test]
fn network_view_wide() {
    let s = network_state(120, 40);
    insta::assert_snapshot!(draw(&s, 120, 40).backend());
}

#[test]
fn network_view_at_80x24_scrolls_and_follows_the_dialer() {
    let mut s = network_state(80, 24);
    insta::assert_snapshot!(draw(&s, 80, 24).backend());
    // Open, it asks again every second; closed, it stops asking.
    assert!(
        s.wants_tick(NOW + 1),
        "the shell ticks while the view is open"
    );
    let fx = update(&mut s, Action::Tick(NOW + 1));
    assert_eq!(fx, vec![lama_tui::ui::state::Effect::LoadNetwork]);
    // Scrolling stops at the last line.
    for _ in 0..50 {
        key(&mut s, KeyCode::Char('j'));
    }
    let screen = format!("{:?}", draw(&s, 80, 24).backend());
    assert!(screen.contains("no address: it dials us"), "{screen}");
    key(&mut s, KeyCode::Esc);
    assert!(s.popup.is_none());
    assert!(!s.wants_tick(NOW + 2));
    assert!(update(&mut s, Action::Tick(NOW + 2)).is_empty());
}

fn invite_code() -> String {
    let node = ident(1, "node-demo@lama.local");
    lama_tui::domain::Code::Invite(lama_tui::domain::Invite {
        person_id: lama_tui::domain::identity::parse_hex::<32>(&node.person_id(), "p").unwrap(),
        home: None,
        transport_key: node.instance.transport_key_bytes().unwrap(),
        token: [9; 16],
        expires_at: NOW + 600,
        urls: vec!["ws://localhost:8765".into()],
    })
    .encode()
}

fn pairing_state() -> State {
    let (_, info) = me(Role::Node);
    let mut s = State::new(info, NOW);
    use lama_tui::ui::state::Effect;
    let fx = update(&mut s, Action::Key(KeyCode::Char('p'), KeyModifiers::NONE));
    assert_eq!(fx, vec![Effect::LoadInvites, Effect::CreateShortCode]);
    update(
        &mut s,
        Action::ShortCode(NewInvite {
            code: "7-lunar-pepper-canal".into(),
            expires_at: NOW + 300,
            reach: lama_tui::app::runtime::CodeReach::Local,
            url: None,
        }),
    );
    // No open invitation yet: one is made.
    assert_eq!(
        update(&mut s, Action::Invites(vec![])),
        vec![Effect::CreateInvite]
    );
    let fx = update(
        &mut s,
        Action::Invite(NewInvite {
            code: invite_code(),
            expires_at: NOW + 600,
            reach: lama_tui::app::runtime::CodeReach::Local,
            url: None,
        }),
    );
    assert_eq!(fx, vec![Effect::LoadInvites]);
    let fx = update(
        &mut s,
        Action::Invites(vec![lama_tui::ui::state::InviteRow {
            code: invite_code(),
            expires_at: NOW + 600,
            status: "open".into(),
        }]),
    );
    assert!(fx.is_empty());
    update(&mut s, Action::Tick(NOW + 75));
    s
}

#[test]
fn pairing_screen_with_qr() {
    let s = pairing_state();
    insta::assert_snapshot!(draw(&s, 120, 40).backend());
}

/// A code from a loopback node says it works only on this machine; one that other
/// machines can use says nothing of the kind.
#[test]
fn the_pairing_screen_says_when_a_code_works_only_here() {
    use lama_tui::app::runtime::CodeReach;
    use lama_tui::ui::state::Popup;
    let mut s = pairing_state();
    let here = rows(&draw(&s, 120, 40)).join("\n");
    assert!(here.contains("works only on this machine"), "{here}");
    if let Some(Popup::Pairing(Some(inv))) = &mut s.popup {
        inv.reach = CodeReach::Network;
    }
    let anywhere = rows(&draw(&s, 120, 40)).join("\n");
    assert!(!anywhere.contains("works only"), "{anywhere}");
}

/// One current code: `p` again shows the open one; when it is used the screen says who
/// paired and what to compare; at 80x24 the text code and the short code are on screen.
#[test]
fn pairing_reuses_the_open_code_confirms_and_fits_80x24() {
    use lama_tui::ui::state::{Effect, InviteRow, Popup};
    let mut s = pairing_state();
    let screen = rows(&draw(&s, 80, 24)).join("\n");
    let code = invite_code();
    assert!(
        screen.contains(&code[..40]),
        "text code missing at 80x24:\n{screen}"
    );
    assert!(screen.contains("7-lunar-pepper-canal"), "{screen}");
    assert!(screen.contains("r revoke"), "{screen}");
    insta::assert_snapshot!(draw(&s, 80, 24).backend());
    key(&mut s, KeyCode::Esc);
    let fx = update(&mut s, Action::Key(KeyCode::Char('p'), KeyModifiers::NONE));
    assert_eq!(
        fx,
        vec![Effect::LoadInvites],
        "the short code is still good"
    );
    let row = InviteRow {
        code: code.clone(),
        expires_at: NOW + 600,
        status: "open".into(),
    };
    assert!(
        update(&mut s, Action::Invites(vec![row])).is_empty(),
        "no new code"
    );
    assert!(matches!(&s.popup, Some(Popup::Pairing(Some(i))) if i.code == code));
    update(
        &mut s,
        Action::Runtime(Event::ContactAdded {
            person_id: "ab".repeat(32),
            name: "bob@lama.local".into(),
            via: lama_tui::domain::Via::Invite,
            verification: "1593 5277 9138".into(),
        }),
    );
    let screen = rows(&draw(&s, 80, 24)).join("\n");
    assert!(
        screen.contains("paired with bob@lama.local") && screen.contains("1593 5277 9138"),
        "{screen}"
    );
    key(&mut s, KeyCode::Enter);
    assert!(s.popup.is_none());
    // A copy says where it went, for a few seconds.
    update(&mut s, Action::Copied("terminal clipboard (OSC 52)".into()));
    let screen = rows(&draw(&s, 80, 24)).join("\n");
    assert!(screen.contains("✓ copied through the terminal"), "{screen}");
    let later = s.now + 60;
    update(&mut s, Action::Tick(later));
    let screen = rows(&draw(&s, 80, 24)).join("\n");
    assert!(!screen.contains("copied"), "{screen}");
}

#[test]
fn the_drawn_qr_decodes_to_the_code_beneath_it() {
    let s = pairing_state();
    let t = draw(&s, 120, 40);
    let buf = t.backend().buffer();
    // Explicit colours: a light terminal background never inverts the code.
    let qr_cell = buf
        .content
        .iter()
        .find(|c| c.symbol() == "█")
        .expect("the QR is drawn");
    assert_eq!(
        (qr_cell.fg, qr_cell.bg),
        (ratatui::style::Color::White, ratatui::style::Color::Black)
    );
    let (w, h) = (buf.area.width as usize, buf.area.height as usize);
    let sym = |x: usize, y: usize| buf[(x as u16, y as u16)].symbol().to_string();
    // Pixels: two per cell vertically; light = drawn half block.
    let light = |x: usize, py: usize| {
        let c = sym(x, py / 2);
        if py.is_multiple_of(2) {
            c == "█" || c == "▀"
        } else {
            c == "█" || c == "▄"
        }
    };
    let scale = 3;
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w * scale, h * 2 * scale, |x, y| {
        if light(x / scale, y / scale) {
            255
        } else {
            0
        }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on screen");
    let (_, text) = grids[0].decode().unwrap();
    // The code printed beneath the symbol, read off the same buffer.
    let code = invite_code();
    let rows: Vec<String> = (0..h)
        .map(|y| {
            (1..w - 1)
                .map(|x| sym(x, y))
                .collect::<String>()
                .trim()
                .to_string()
        })
        .collect();
    let below = common::code_beneath(&rows);
    assert_eq!(below, code, "the code shown beneath the QR");
    assert_eq!(text, code);
}

#[test]
fn accept_with_a_typo_is_flagged_before_sending() {
    let (_, info) = me(Role::Client);
    let mut s = State::new(info, NOW);
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char('a'));
    let mut code = invite_code();
    code.replace_range(40..41, if &code[40..41] == "A" { "B" } else { "A" });
    update(&mut s, Action::Paste(code));
    let fx = update(&mut s, Action::Key(KeyCode::Enter, KeyModifiers::NONE));
    assert!(fx.is_empty(), "a code with a typo must not be sent");
    insta::assert_snapshot!(draw(&s, 100, 30).backend());
}

#[test]
fn accept_success_shows_the_verification_string() {
    let (_, info) = me(Role::Client);
    let mut s = State::new(info, NOW);
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char('a'));
    update(&mut s, Action::Paste(invite_code()));
    let fx = update(&mut s, Action::Key(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(fx, vec![lama_tui::ui::state::Effect::Accept(invite_code())]);
    update(
        &mut s,
        Action::Accepted(Ok(Paired {
            person_id: "ab".repeat(32),
            name: "node-demo@lama.local".into(),
            verification: "4821 0937 5512".into(),
        })),
    );
    insta::assert_snapshot!(draw(&s, 100, 30).backend());
}

#[test]
fn accept_takes_a_short_code_with_or_without_an_address() {
    use lama_tui::ui::state::{check_code, split_short, Effect, InputCheck};
    let (_, info) = me(Role::Client);
    let mut s = State::new(info, NOW);
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char('a'));
    // A typo in a word is named, with the word it probably was, before anything is sent.
    typed(&mut s, "7-lunar-peper-canal");
    let fx = update(&mut s, Action::Key(KeyCode::Enter, KeyModifiers::NONE));
    assert!(fx.is_empty(), "a short code with a typo must not be sent");
    insta::assert_snapshot!(draw(&s, 100, 30).backend());
    for _ in 0.."7-lunar-peper-canal".len() {
        key(&mut s, KeyCode::Backspace);
    }
    typed(&mut s, "7 Lunar Pepper Canal ws://10.0.0.2:8765");
    let fx = update(&mut s, Action::Key(KeyCode::Enter, KeyModifiers::NONE));
    assert_eq!(
        fx,
        vec![Effect::Accept(
            "7 Lunar Pepper Canal ws://10.0.0.2:8765".into()
        )]
    );
    assert_eq!(
        split_short("7 Lunar Pepper Canal ws://10.0.0.2:8765"),
        (
            "7 Lunar Pepper Canal".to_string(),
            Some("ws://10.0.0.2:8765".to_string())
        )
    );
    assert_eq!(
        split_short(" 7-lunar-pepper-canal "),
        ("7-lunar-pepper-canal".to_string(), None)
    );
    assert_eq!(check_code("7-lunar-pepper-canal"), InputCheck::Short);
    assert_eq!(check_code(&invite_code()), InputCheck::Invite);
    assert_eq!(check_code("  "), InputCheck::Empty);
    assert!(matches!(check_code("7-lunar"), InputCheck::Bad(_)));
}

#[test]
fn composer_sends_recalls_and_pastes() {
    let mut s = chat_state();
    typed(&mut s, "hello");
    let fx = update(&mut s, Action::Key(KeyCode::Enter, KeyModifiers::NONE));
    assert!(matches!(&fx[..], [lama_tui::ui::state::Effect::Send(_, t)] if t == "hello"));
    assert!(s.composer.is_empty());
    update(&mut s, Action::Key(KeyCode::Enter, KeyModifiers::ALT));
    assert_eq!(s.composer, "\n");
    update(&mut s, Action::Key(KeyCode::Backspace, KeyModifiers::NONE));
    key(&mut s, KeyCode::Up);
    assert_eq!(s.composer, "hello", "Up recalls the last sent line");
    update(&mut s, Action::Paste(" world".into()));
    assert_eq!(s.composer, "hello world");
    // Ctrl-C quits from the composer; q is just a letter there.
    key(&mut s, KeyCode::Char('q'));
    assert!(!s.quit);
    update(
        &mut s,
        Action::Key(KeyCode::Char('c'), KeyModifiers::CONTROL),
    );
    assert!(s.quit);
}

/// Everything drawn, as one string per row.
fn rows(t: &Terminal<TestBackend>) -> Vec<String> {
    let buf = t.backend().buffer();
    let w = usize::from(buf.area.width);
    let cells: Vec<&str> = buf.content.iter().map(|c| c.symbol()).collect();
    cells.chunks(w).map(|r| r.concat()).collect()
}

/// A newcomer's first keys do what the screen says, before any channel exists.
#[test]
fn first_keys_work_before_any_channel() {
    let (_, info) = me(Role::Node);
    let mut s = State::new(info, NOW);
    let fx = update(&mut s, Action::Key(KeyCode::Char('p'), KeyModifiers::NONE));
    assert!(
        matches!(s.popup, Some(lama_tui::ui::state::Popup::Pairing(_))),
        "p pairs"
    );
    assert!(!fx.is_empty());
    assert!(s.composer.is_empty(), "nothing typed into the composer");
    let (_, info) = me(Role::Client);
    let mut s = State::new(info, NOW);
    key(&mut s, KeyCode::Char('p'));
    let why = s.last_error.clone().unwrap_or_default();
    assert!(
        why.contains("no home node to carry its invitations") && why.contains("press a"),
        "{why}"
    );
    key(&mut s, KeyCode::Char('a'));
    assert!(matches!(
        s.popup,
        Some(lama_tui::ui::state::Popup::Accept { .. })
    ));
    // Ctrl letters in the dialog are editing keys, never typed.
    typed(&mut s, "LAMA1 xyz");
    update(
        &mut s,
        Action::Key(KeyCode::Char('w'), KeyModifiers::CONTROL),
    );
    update(
        &mut s,
        Action::Key(KeyCode::Char('a'), KeyModifiers::CONTROL),
    );
    match &s.popup {
        Some(lama_tui::ui::state::Popup::Accept { input, .. }) => assert_eq!(input, "LAMA1 "),
        other => panic!("the accept dialog closed: {other:?}"),
    }
    // Ctrl-A went to the start of the field: typing lands there.
    key(&mut s, KeyCode::Char('x'));
    match &s.popup {
        Some(lama_tui::ui::state::Popup::Accept { input, .. }) => assert_eq!(input, "xLAMA1 "),
        other => panic!("the accept dialog closed: {other:?}"),
    }
}

/// What is shown is read: the open channel is marked read in the store on the next tick
/// (so it stays read after a restart), and a new group opens for the one who made it.
#[test]
fn the_open_channel_is_marked_read_and_a_new_group_opens() {
    use lama_tui::ui::state::Effect;
    let mut s = chat_state();
    let ch = s.channel_id().unwrap().to_string();
    let alice = s.messages[0].author.clone();
    assert!(!update(&mut s, Action::Tick(NOW)).contains(&Effect::MarkRead(ch.clone())));
    update(
        &mut s,
        Action::Runtime(Event::Message(MessageView {
            channel: ch.clone(),
            entry: format!("{:064}", 77),
            author: alice,
            author_name: "demo@lama.local".into(),
            ts: NOW * 1000,
            text: Some("seen as it arrives".into()),
            kind: "text",
        })),
    );
    // The shell ticks only when the state has a use for it: here, the read marker.
    assert!(s.wants_tick(NOW + 1));
    let fx = update(&mut s, Action::Tick(NOW + 1));
    assert_eq!(fx, vec![Effect::MarkRead(ch.clone())]);
    assert!(!s.wants_tick(NOW + 2), "idle: no tick, no redraw");
    assert!(
        update(&mut s, Action::Tick(NOW + 2)).is_empty(),
        "once per arrival burst"
    );
    // Deliveries refresh "N behind" on the next tick.
    update(
        &mut s,
        Action::Runtime(Event::Delivered {
            entries: vec!["e".into()],
        }),
    );
    assert_eq!(
        update(&mut s, Action::Tick(NOW + 3)),
        vec![Effect::RefreshContacts]
    );
    // A group someone else made shows up before its first message.
    let fx = update(
        &mut s,
        Action::Runtime(Event::ChannelUpdated {
            channel: "g-0123".into(),
            kind: "create",
        }),
    );
    assert_eq!(fx, vec![Effect::RefreshChannels]);
    // A group we made opens as soon as the channel list has it.
    let gid = "g-ffeeddccbbaa99887766554433221100".to_string();
    update(&mut s, Action::GroupCreated(gid.clone()));
    let mut list = s.channels.clone();
    list.push((
        Channel {
            id: gid.clone(),
            name: "new team".into(),
            members: vec![],
            created_at: NOW,
        },
        0,
    ));
    let fx = update(&mut s, Action::Channels(list));
    assert_eq!(s.channel_id(), Some(gid.as_str()));
    assert_eq!(fx, vec![Effect::LoadHistory(gid)]);
}

/// The two lists never read alike: each footer says what Enter does there.
#[test]
fn contacts_and_channels_footers_differ() {
    let mut s = chat_state();
    key(&mut s, KeyCode::Tab); // composer -> contacts
    let contacts = rows(&draw(&s, 80, 24)).pop().unwrap_or_default();
    key(&mut s, KeyCode::Tab); // -> channels
    let channels = rows(&draw(&s, 80, 24)).pop().unwrap_or_default();
    assert!(contacts.contains("Enter chat"), "{contacts}");
    assert!(channels.contains("Enter write here"), "{channels}");
    assert!(contacts.trim_end().chars().count() <= 80 && channels.trim_end().chars().count() <= 80);
}

/// Unread counts stay whole however long the name; the open-codes list follows the
/// selection (r revokes what is on screen), and revoking the code shown moves on.
#[test]
fn badges_stay_whole_and_the_code_list_follows_the_selection() {
    use lama_tui::ui::state::{Effect, InviteRow, Popup};
    let mut s = chat_state();
    let mut c = s.contacts[0].clone();
    c.contact.person.name = "a-very-long-name-for-a-narrow-pane@lama.local".into();
    update(&mut s, Action::Contacts(vec![c]));
    let ch = s.channels[0].0.clone();
    update(&mut s, Action::Channels(vec![(ch, 123)]));
    let screen = rows(&draw(&s, 80, 24)).join("\n");
    assert!(screen.contains("(123)"), "the badge is cut:\n{screen}");
    assert!(screen.contains('…'), "the name gives way:\n{screen}");

    let mut s = pairing_state();
    let shown = match &s.popup {
        Some(Popup::Pairing(Some(i))) => i.code.clone(),
        other => panic!("{other:?}"),
    };
    let mut list: Vec<InviteRow> = (0..6)
        .map(|i| InviteRow {
            code: format!("{i}-lunar-pepper-canal"),
            expires_at: NOW + 300,
            status: "open".into(),
        })
        .collect();
    list.insert(
        0,
        InviteRow {
            code: shown.clone(),
            expires_at: NOW + 600,
            status: "open".into(),
        },
    );
    update(&mut s, Action::Invites(list));
    for _ in 0..10 {
        key(&mut s, KeyCode::Down);
    }
    assert_eq!(s.invite_sel, 6, "the selection stops at the last open code");
    let screen = rows(&draw(&s, 120, 60)).join("\n");
    assert!(
        screen.contains("short code 5-lunar-pepper-canal"),
        "{screen}"
    );
    for _ in 0..10 {
        key(&mut s, KeyCode::Up);
    }
    let fx = update(&mut s, Action::Key(KeyCode::Char('r'), KeyModifiers::NONE));
    assert_eq!(fx, vec![Effect::Revoke(shown)]);
    assert!(matches!(s.popup, Some(Popup::Pairing(None))), "moves on");
}

/// A one-sided card exchange reads as what it is, not as a network fault.
#[test]
fn a_card_they_have_not_imported_is_said_so() {
    let mut s = chat_state();
    let mut c = s.contacts[0].clone();
    c.state = PeerState::Offline;
    c.last_error = Some("peer closed the connection (not_a_contact): not a contact".into());
    c.refused_us = Some("you are not a contact of this instance".into());
    update(&mut s, Action::Contacts(vec![c]));
    let screen = rows(&draw(&s, 120, 30)).join("\n");
    assert!(
        screen.contains("waiting for them to add your card"),
        "{screen}"
    );
}

#[test]
fn long_messages_wrap_under_the_name_and_pasted_lines_stay_lines() {
    let mut s = chat_state();
    update(&mut s, Action::Resize(80, 24));
    let ch = s.channel_id().unwrap().to_string();
    let words: Vec<String> = (0..60).map(|i| format!("w{i:02}")).collect();
    let long = words.join(" ");
    assert!(long.len() > 200);
    let alice = s.messages[0].author.clone();
    for (i, text) in [long.as_str(), "first line\nsecond line\nthird line"]
        .into_iter()
        .enumerate()
    {
        update(
            &mut s,
            Action::Runtime(Event::Message(MessageView {
                channel: ch.clone(),
                entry: format!("{:064}", 900 + i),
                author: alice.clone(),
                author_name: "demo@lama.local".into(),
                ts: NOW * 1000 + 8 * 3_600_000,
                text: Some(text.into()),
                kind: "text",
            })),
        );
    }
    let t = draw(&s, 80, 24);
    let screen = rows(&t).join("\n");
    for w in &words {
        assert!(
            screen.contains(w.as_str()),
            "{w} is not on screen:\n{screen}"
        );
    }
    insta::assert_snapshot!(t.backend());
}

#[test]
fn composer_edits_like_readline_grows_and_keeps_the_cursor_in_view() {
    let mut s = chat_state();
    update(&mut s, Action::Resize(80, 24));
    let ctrl = KeyModifiers::CONTROL;
    typed(&mut s, "hello wrld");
    for _ in 0..3 {
        key(&mut s, KeyCode::Left);
    }
    key(&mut s, KeyCode::Char('o'));
    assert_eq!(s.composer, "hello world");
    update(&mut s, Action::Key(KeyCode::Char('w'), ctrl));
    assert_eq!(
        s.composer, "hello rld",
        "Ctrl-W drops the word before the cursor"
    );
    update(&mut s, Action::Key(KeyCode::Char('a'), ctrl));
    update(&mut s, Action::Key(KeyCode::Char('k'), ctrl));
    assert!(
        s.composer.is_empty(),
        "Ctrl-A then Ctrl-K: nothing typed as letters"
    );
    // A terminal's paste: CR between lines, kept as line breaks.
    update(
        &mut s,
        Action::Paste("line one\rline two\rline three".into()),
    );
    assert_eq!(s.composer, "line one\nline two\nline three");
    let long = "x".repeat(300);
    update(&mut s, Action::Paste(format!("\r{long}")));
    // The composer grows to its limit and shows the end, where the cursor is.
    let t = draw(&s, 80, 24);
    insta::assert_snapshot!(t.backend());
    let fx = update(&mut s, Action::Key(KeyCode::Enter, KeyModifiers::NONE));
    assert!(
        matches!(&fx[..], [lama_tui::ui::state::Effect::Send(_, t)] if t.starts_with("line one\nline two\nline three\nxxx") && t.len() == 8 + 1 + 8 + 1 + 10 + 1 + 300),
        "{fx:?}"
    );
}

#[test]
fn page_keys_move_a_screen_and_new_messages_below_are_announced() {
    let mut s = chat_state();
    update(&mut s, Action::Resize(80, 24));
    let ch = s.channel_id().unwrap().to_string();
    let alice = s.messages[0].author.clone();
    let msg = |i: u64| MessageView {
        channel: ch.clone(),
        entry: format!("{:064}", 1000 + i),
        author: alice.clone(),
        author_name: "demo@lama.local".into(),
        ts: NOW * 1000 + i,
        text: Some(format!("message {i}")),
        kind: "text",
    };
    let history: Vec<MessageView> = (0..100).map(msg).collect();
    update(&mut s, Action::History(ch.clone(), history));
    key(&mut s, KeyCode::PageUp); // from the composer
    let page = s.page_rows();
    assert_eq!(s.scroll, page);
    assert!(
        page > 5,
        "a page is the visible rows, not a fixed 10: {page}"
    );
    update(&mut s, Action::Runtime(Event::Message(msg(100))));
    let screen = rows(&draw(&s, 80, 24)).join("\n");
    assert!(screen.contains("1 new below: End"), "{screen}");
    key(&mut s, KeyCode::End); // the cursor is at the end of the (empty) line
    assert_eq!((s.scroll, s.new_below), (0, 0));
    let screen = rows(&draw(&s, 80, 24)).join("\n");
    assert!(screen.contains("message 100"), "{screen}");
}

#[test]
fn one_frame_of_a_huge_channel_renders_only_what_fits() {
    // The UI holds a window of the history, never all of it; a frame walks only the
    // visible rows. 100,000 messages pushed live keep the window bounded.
    let mut s = chat_state();
    let ch = s.channel_id().unwrap().to_string();
    for i in 0..100_000u64 {
        update(
            &mut s,
            Action::Runtime(Event::Message(MessageView {
                channel: ch.clone(),
                entry: format!("{i:064}"),
                author: "a".repeat(64),
                author_name: "demo@lama.local".into(),
                ts: NOW * 1000 + i,
                text: Some(format!("message {i}")),
                kind: "text",
            })),
        );
    }
    assert!(s.messages.len() <= lama_tui::ui::state::WINDOW_MESSAGES);
    let t = draw(&s, 100, 30);
    let screen = format!("{}", t.backend());
    assert!(screen.contains("message 99999"));
}

#[test]
fn new_group_channel_picks_members_from_contacts() {
    let mut s = chat_state();
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char('g'));
    typed(&mut s, "team");
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char(' '));
    insta::assert_snapshot!(draw(&s, 100, 30).backend());
    let fx = update(&mut s, Action::Key(KeyCode::Enter, KeyModifiers::NONE));
    let alice = s.contacts[0].contact.person_id();
    assert_eq!(
        fx,
        vec![lama_tui::ui::state::Effect::CreateGroup(
            "team".into(),
            vec![alice.to_string()]
        )]
    );
}

#[test]
fn removing_a_contact_asks_first() {
    let mut s = chat_state();
    key(&mut s, KeyCode::Tab);
    key(&mut s, KeyCode::Char('d'));
    insta::assert_snapshot!(draw(&s, 100, 30).backend());
    // Anything but y keeps the contact.
    assert!(update(&mut s, Action::Key(KeyCode::Char('n'), KeyModifiers::NONE)).is_empty());
    key(&mut s, KeyCode::Char('d'));
    let fx = update(&mut s, Action::Key(KeyCode::Char('y'), KeyModifiers::NONE));
    assert!(matches!(
        &fx[..],
        [lama_tui::ui::state::Effect::RemoveContact(_)]
    ));
}

#[test]
fn a_click_selects_a_channel_and_the_wheel_scrolls() {
    let mut s = chat_state();
    update(&mut s, Action::Resize(100, 30));
    // Body starts at row 3; the channels box is the lower half of the side pane (rows 15..),
    // its first item on row 16, the second on row 17.
    let fx = update(
        &mut s,
        Action::Mouse(
            crossterm::event::MouseEventKind::Down(crossterm::event::MouseButton::Left),
            5,
            17,
        ),
    );
    assert_eq!(s.channel_sel, 1);
    assert!(
        matches!(&fx[..], [lama_tui::ui::state::Effect::LoadHistory(id)] if id.starts_with("g-"))
    );
    update(
        &mut s,
        Action::Mouse(crossterm::event::MouseEventKind::ScrollUp, 50, 10),
    );
    assert_eq!(s.scroll, 3);
}

#[test]
fn own_messages_show_a_marker_until_a_peer_stored_them() {
    let mut s = chat_state();
    let ch = s.channel_id().unwrap().to_string();
    let mine = |entry: &str| MessageView {
        channel: ch.clone(),
        entry: entry.into(),
        author: s.me.person_id.clone(),
        author_name: s.me.name.clone(),
        ts: NOW * 1000,
        text: Some(format!("mine {entry}")),
        kind: "text",
    };
    let (a, b) = (mine("e1"), mine("e2"));
    update(&mut s, Action::Sent(a));
    let screen = format!("{}", draw(&s, 100, 30).backend());
    assert!(screen.contains("mine e1 …"), "marker missing:\n{screen}");
    update(
        &mut s,
        Action::Runtime(Event::Delivered {
            entries: vec!["e1".into(), "e2".into()],
        }),
    );
    let screen = format!("{}", draw(&s, 100, 30).backend());
    assert!(!screen.contains("mine e1 …"), "marker stayed:\n{screen}");
    // Delivered before Sent (they race): no marker at all.
    update(&mut s, Action::Sent(b));
    assert!(s.pending.is_empty());
}

#[test]
fn control_and_bidi_characters_never_reach_the_terminal() {
    // A hostile contact's name and message: escapes, a bell, C1 controls and bidi
    // overrides/isolates that would reorder what follows them on screen.
    let mut s = chat_state();
    let evil = "\u{202e}evil\u{2066}\x1b[2J\x07\u{9b}31m";
    let ch = s.channels[0].0.id.clone();
    update(
        &mut s,
        Action::Runtime(Event::Message(MessageView {
            channel: ch,
            entry: format!("{:064}", 99),
            author: "ab".repeat(32),
            author_name: format!("mallory{evil}"),
            ts: NOW * 1000,
            text: Some(format!("look{evil}here")),
            kind: "text",
        })),
    );
    let t = draw(&s, 120, 40);
    let buf = t.backend().buffer();
    let bad: Vec<String> = buf
        .content
        .iter()
        .map(|c| c.symbol().to_string())
        .filter(|sym| sym.chars().any(lama_tui::ui::widgets::is_unsafe))
        .collect();
    assert!(bad.is_empty(), "unsafe characters drawn: {bad:?}");
    let screen: String = buf.content.iter().map(|c| c.symbol()).collect();
    assert!(screen.contains("lookevil"), "the visible text stays");
}

/// Key bindings from the config file: the rebound key works, the old one starts nothing,
/// and the footer and the help popup advertise what is bound.
#[test]
fn rebound_keys_work_and_the_screens_say_so() {
    use lama_tui::app::config::{parse, TimeFormat};
    let file = parse(
        "[keys]\nnew_group = \"N\"\nhelp = \"h\"\n[ui]\naccent = \"yellow\"\ntime_format = \"12h\"\n",
        std::path::Path::new("test.toml"),
    )
    .expect("valid config");
    let mut s = chat_state();
    s.prefs = lama_tui::ui::Prefs::from_file(&file).expect("valid prefs");
    assert_eq!(s.prefs.time_format, TimeFormat::H12);
    key(&mut s, KeyCode::Tab); // composer -> contacts
    let screen = format!("{:?}", draw(&s, 120, 30).backend());
    assert!(
        screen.contains("N group") && screen.contains("h help"),
        "{screen}"
    );
    key(&mut s, KeyCode::Char('g'));
    assert!(
        s.popup.is_none(),
        "the old key of a rebound action starts nothing"
    );
    key(&mut s, KeyCode::Char('N'));
    assert!(
        matches!(s.popup, Some(lama_tui::ui::state::Popup::NewGroup { .. })),
        "N opens the new group popup"
    );
    key(&mut s, KeyCode::Esc);
    key(&mut s, KeyCode::Char('h'));
    let help = format!("{:?}", draw(&s, 120, 30).backend());
    assert!(
        help.contains("N                 new group channel"),
        "{help}"
    );
}

/// A client with a home node invites like a node (its home node carries the code), with
/// no short code: those are a node's own.
#[test]
fn a_client_with_a_home_node_opens_the_pairing_screen() {
    use lama_tui::ui::state::{Effect, Popup};
    let (_, info) = me(Role::Client);
    let mut s = State::new(info, NOW);
    let home = ident(11, "node-demo@lama.local");
    let contact = Contact {
        person: home.person.clone(),
        instances: vec![home.instance.clone()],
        endpoints: vec![],
        profile: None,
        replica: true,
        replica_for: false,
        via: lama_tui::domain::Via::Provision,
        added_at: NOW,
        endpoint_notes: vec![],
        vouched_by: vec![],
    };
    update(&mut s, Action::Contacts(vec![connected(contact)]));
    let fx = update(&mut s, Action::Key(KeyCode::Char('p'), KeyModifiers::NONE));
    assert!(
        matches!(s.popup, Some(Popup::Pairing(_))),
        "{:?}",
        s.last_error
    );
    assert!(
        fx.iter().any(|e| matches!(e, Effect::LoadInvites)),
        "{fx:?}"
    );
    // Its home node makes its short code (PROTOCOL.md 6.5).
    assert!(
        fx.iter().any(|e| matches!(e, Effect::CreateShortCode)),
        "{fx:?}"
    );
}
