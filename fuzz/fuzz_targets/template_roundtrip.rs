//! OpenNebula template syntax: whatever parses renders, and what renders
//! parses back to the same template (values with `"` and newlines included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use opennebula::template::Template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(t) = Template::parse(text) else { return };
    let Ok(rendered) = t.render() else { return };
    let again = Template::parse(&rendered).expect("a rendered template parses");
    assert_eq!(again, t, "render/parse round trip of {text:?} via {rendered:?}");
});
