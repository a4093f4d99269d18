//! The CEL rules of the ServiceGroup schema, one small function each.
//!
//! Arguments are CEL expressions (`"self"`, `"self.pool"`) so one rule serves `v4pools[]`, `v4pool`,
//! `v6pools[]`, `v6pool` and the legacy fields. Three constraints shape the expressions:
//! - A rule that fails with an evaluation error rejects the object with an unhelpful message, so every
//!   rule first checks what the functions it calls need (`isCIDR` before `cidr()`, `isIP` before
//!   `containsIP`) and passes when another rule already reports the problem.
//! - The API server refuses a CRD whose rules' estimated worst-case cost is over budget, and it estimates
//!   from the fields' `maxLength`/`maxItems`. It can bound `split(..)[i]`, `substring`, `replace`, but not
//!   the result of a `map()` (nor anything computed from it, e.g. `join`), so values are recomputed where
//!   they are used instead of being built with `map` or bound (`cel.bind` is not offered to CRD rules).
//!   The generated text is long; the functions that write it are short.
//! - The same rules are evaluated client-side by kube-cel in the unit tests, so they stick to functions
//!   both implement.

use super::Family;
use kube::core::{Message, Reason, Rule};

/// Prefix lengths `/0`..`/128` (`/NN` without leading zeros).
const PREFIX_ANY: &str = "^/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$";
/// Prefix lengths `/0`..`/32`.
const PREFIX_V4: &str = "^/([0-9]|[12][0-9]|3[0-2])$";

/// A static failure message.
fn text(message: String) -> Message {
    Message::Message(message)
}

/// `v` is an `a-b` range of two addresses (blanks around either address allowed).
fn is_range(v: &str) -> String {
    format!("({v}.split('-').size() == 2 && {v}.split('-').all(a, isIP(a.trim())))")
}

/// The two addresses of range `v` are of different families (only one spells IPv6 with `:`).
fn mixed_families(v: &str) -> String {
    format!("({v}.split('-')[0].contains(':') != {v}.split('-')[1].contains(':'))")
}

/// Address `i` (0 or 1) of range `v`, without blanks, in lower case.
fn range_end(v: &str, i: usize) -> String {
    format!("{v}.split('-')[{i}].trim().lowerAscii()")
}

/// The integer value of dotted-quad IPv4 address `a` (`isIP` has ruled out leading zeros and
/// out-of-range octets, so `int()` cannot fail).
fn ipv4_int(a: &str) -> String {
    let octet = |k: usize| format!("int({a}.split('.')[{k}])");
    format!("{} * 16777216 + {} * 65536 + {} * 256 + {}", octet(0), octet(1), octet(2), octet(3))
}

/// IPv6 address `a` with its `::` replaced by the zero groups it stands for, leaving exactly eight
/// `:`-separated groups (the first or last may be empty: `::1` becomes `:0:0:0:0:0:0:1`). With `::`,
/// `a` has `n = size(a.split(':')) - 1` colons and needs `8 - n` more `0:` groups.
fn ipv6_eight_groups(a: &str) -> String {
    format!("{a}.replace('::', ':' + '0:0:0:0:0:0:0:'.substring(0, 2 * (9 - size({a}.split(':')))))")
}

/// IPv6 address `a` (lower case, hex groups only) as 32 hex digits, each group zero-padded to four
/// (the last four characters of `'0000' + g`), so that string order is address order.
fn ipv6_hex32(a: &str) -> String {
    let groups = ipv6_eight_groups(a);
    let padded =
        |k: usize| format!("('0000' + {groups}.split(':')[{k}]).substring(size({groups}.split(':')[{k}]))");
    (0..8).map(padded).collect::<Vec<_>>().join(" + ")
}

/// `!(every field in fields is set) || rule`: the rule of a pair of optional (legacy) fields.
pub(super) fn when_set(fields: &[&str], rule: Rule) -> Rule {
    let guard: Vec<String> = fields.iter().map(|f| format!("!has(self.{f})")).collect();
    Rule { rule: format!("{} || ({})", guard.join(" || "), rule.rule), ..rule }
}

/// Legacy form: `needed` must be set when `given` is.
pub(super) fn legacy_requires(needed: &str, given: &str) -> Rule {
    Rule::new(format!("!has(self.{given}) || has(self.{needed})"))
        .message(text(format!("{needed} is required when {given} is set (legacy single-pool form)")))
        .field_path(format!(".{needed}"))
        .reason(Reason::FieldValueRequired)
}

/// `subnet` is a CIDR.
pub(super) fn subnet_is_cidr(field: &str) -> Rule {
    Rule::new("isCIDR(self)")
        .message(text(format!("{field} must be a CIDR such as 192.0.2.0/24 or 2001:db8::/64")))
}

/// `pool` is a CIDR or an `a-b` range of two addresses.
pub(super) fn pool_syntax(field: &str) -> Rule {
    Rule::new(format!("isCIDR(self) || {}", is_range("self"))).message(text(format!(
        "{field} must be a CIDR (192.0.2.0/28) or a range of two addresses (192.0.2.200-192.0.2.220)"
    )))
}

/// Both ends of a range are of one family.
pub(super) fn range_same_family(field: &str) -> Rule {
    Rule::new(format!("!{} || !{}", is_range("self"), mixed_families("self")))
        .message(text(format!("{field}: both addresses of a range must be of the same family")))
}

/// An IPv6 range is written in hex groups: the order check below cannot read an embedded dotted IPv4
/// tail (`64:ff9b::192.0.2.1`); a CIDR may still use one.
pub(super) fn range_ipv6_hex_only(field: &str) -> Rule {
    Rule::new(format!(
        "!{} || {} || !self.contains(':') || !self.contains('.')",
        is_range("self"),
        mixed_families("self")
    ))
    .message(text(format!(
        "{field}: write the addresses of an IPv6 range in hex groups, without a dotted IPv4 tail"
    )))
}

/// The first address of a range is not above the last: IPv4 compares integer values, IPv6 compares
/// 32-hex-digit spellings. Mixed families and dotted IPv6 pass here (the two rules above report them).
pub(super) fn range_ordered(field: &str) -> Rule {
    let (first, last) = (range_end("self", 0), range_end("self", 1));
    let compare = format!(
        "{first}.contains(':') ? {} <= {} : {} <= {}",
        ipv6_hex32(&first),
        ipv6_hex32(&last),
        ipv4_int(&first),
        ipv4_int(&last)
    );
    Rule::new(format!(
        "!{} || {} || self.contains('.') && self.contains(':') || ({compare})",
        is_range("self"),
        mixed_families("self")
    ))
    .message(text(format!("{field}: the first address of a range must not be above the last")))
}

/// The pool lies inside the subnet: a CIDR pool is contained in it, a range has both ends in it.
pub(super) fn pool_inside_subnet(subnet: &str, pool: &str) -> Rule {
    Rule::new(format!(
        "!isCIDR({subnet}) || (isCIDR({pool}) ? cidr({subnet}).containsCIDR({pool}) : \
             (!{} || {pool}.split('-').all(a, cidr({subnet}).containsIP(a.trim()))))",
        is_range(pool)
    ))
    .message("pool must lie inside subnet")
    .field_path(".pool")
}

/// `aggregation` is `default` or a prefix length `/0`..`/128` (the family bound is checked next).
pub(super) fn aggregation_syntax(field: &str) -> Rule {
    Rule::new(format!("self == 'default' || self.matches('{PREFIX_ANY}')")).message(text(format!(
        "{field} must be 'default' or a prefix length /0 to /32 (IPv4) or /0 to /128 (IPv6)"
    )))
}

/// An IPv4 subnet's pool aggregates with at most `/32`.
pub(super) fn aggregation_fits_family(subnet: &str, aggregation: &str) -> Rule {
    Rule::new(format!(
        "!isCIDR({subnet}) || {subnet}.contains(':') || !{aggregation}.matches('{PREFIX_ANY}') || \
             {aggregation}.matches('{PREFIX_V4}')"
    ))
    .message("aggregation of an IPv4 pool must be 'default' or /0 to /32")
    .field_path(".aggregation")
}

/// CEL: pool `p` (an expression) is written in `family`'s addresses, judged by its spelling (`:` is
/// IPv6), so a malformed address still gets this message rather than an evaluation error.
fn is_of_family(p: &str, family: Family) -> String {
    match family {
        Family::V4 => format!("!{p}.subnet.contains(':') && !{p}.pool.contains(':')"),
        Family::V6 => format!("{p}.subnet.contains(':') && {p}.pool.contains(':')"),
    }
}

fn family_message(field: &str, family: Family) -> String {
    match family {
        Family::V4 => format!("{field} holds IPv4 pools only; put IPv6 pools in v6pools"),
        Family::V6 => format!("{field} holds IPv6 pools only; put IPv4 pools in v4pools"),
    }
}

/// Every pool of list `field` is of `family`.
pub(super) fn list_of_family(field: &str, family: Family) -> Rule {
    Rule::new(format!("self.all(p, {})", is_of_family("p", family)))
        .message(text(family_message(field, family)))
}

/// The single pool `field` is of `family`.
pub(super) fn pool_of_family(field: &str, family: Family) -> Rule {
    Rule::new(is_of_family("self", family)).message(text(family_message(field, family)))
}
