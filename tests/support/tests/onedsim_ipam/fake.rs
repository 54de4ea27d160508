//! The fake drivers: an IPAM driver (`ipam/fake/<action>`) and a network
//! driver (`vnm/fakevnm/<action>`) whose behaviour is read from the message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use opennebula::xml;

/// A fake IPAM (`ipam/fake`) or network (`vnm/fakevnm`) driver. Register
/// answers `10.9.<id>`-addresses with extra attributes; `FAKE_REGISTER =
/// fail|bad`, `FAKE_UNREGISTER = fail`, `FAKE_SLEEP_MS` in the range, and
/// `FAKE_VNET = fail` in a network's template, change that.
pub fn main(action: &str, argument: &str) -> ExitCode {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let doc = xml::parse(&opennebula::base64::decode(input.as_bytes()).unwrap()).unwrap();
    let attr = |path: &str| doc.at(path).map_or(String::new(), |e| e.text.clone());
    if let Ok(ms) = attr("AR/FAKE_SLEEP_MS").parse() {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let refuse = |what: &str| {
        eprintln!("ERROR: fake {action}: refused");
        eprintln!("{what}");
        ExitCode::from(1)
    };
    match action {
        "register_address_range" => match attr("AR/FAKE_REGISTER").as_str() {
            "fail" => refuse("no flexible IP left in fr-par-1"),
            "bad" => {
                println!("AR = [ TYPE = \"IP4\", SIZE = \"1\" ]");
                ExitCode::SUCCESS
            }
            _ => {
                let n: u32 = argument.parse().unwrap();
                println!(
                    "AR = [\n  TYPE = \"IP4\",\n  IP = \"10.9.{}.{}\",\n  SIZE = \"1\",\n  FAKE_ANSWERED = \"yes\",\n  FAKE_OVERRIDE = \"answer\"\n]",
                    n / 200,
                    n % 200 + 1
                );
                ExitCode::SUCCESS
            }
        },
        "unregister_address_range" if attr("AR/FAKE_UNREGISTER") == "fail" => refuse("the flexible IP is locked"),
        "get_address" => {
            println!("ADDRESS = [ IP = \"{}\", SIZE = \"1\" ]", attr("AR/IP"));
            ExitCode::SUCCESS
        }
        "vnet_create" if attr("TEMPLATE/FAKE_VNET") == "fail" => refuse("cannot create the network"),
        "vnet_create" => {
            println!("CREATED_BY = \"fakevnm\"");
            ExitCode::SUCCESS
        }
        _ => ExitCode::SUCCESS,
    }
}
