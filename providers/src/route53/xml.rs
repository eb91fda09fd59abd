//! The little XML Route 53 speaks: a response read into a tree of elements (namespaces
//! dropped, text unescaped), and text escaped for a request body.

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event;
use quick_xml::Reader;

/// Responses are small (a page of 300 RRsets at most): deeper nesting is not Route 53's.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    /// The local name, without a namespace prefix.
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the child at `path` (`["Error", "Code"]`).
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        let mut at = self;
        for p in path {
            at = at.child(p)?;
        }
        Some(at.text.as_str())
    }

    /// Every element named `name` at any depth, in document order.
    pub fn find_all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        for c in &self.children {
            if c.name == name {
                out.push(c);
            }
            c.find_all(name, out);
        }
    }
}

/// The document's root element.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} elements"));
                }
                stack.push(Element {
                    name: start.local_name().as_ref().to_owned(),
                    ..Element::default()
                });
            }
            Event::Empty(empty) => {
                let e = Element {
                    name: empty.local_name().as_ref().to_owned(),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => return Ok(e),
                }
            }
            Event::End(_) => {
                let done = stack.pop().ok_or("an end tag without a start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Text(t) => {
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(&t.into_inner());
                }
            }
            Event::CData(c) => {
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(&c.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                let c = r.resolve_char_ref().map_err(|e| e.to_string())?;
                let name = r.into_inner();
                let resolved = match c {
                    Some(c) => c.to_string(),
                    None => resolve_xml_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                        .to_owned(),
                };
                if let Some(e) = stack.last_mut() {
                    e.text.push_str(&resolved);
                }
            }
            Event::Eof => return Err("no root element".into()),
            _ => {}
        }
    }
}

/// `s` as XML character data.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_listing() {
        let doc = r#"<?xml version="1.0"?>
<ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
  <ResourceRecordSets><ResourceRecordSet><Name>_mta-sts.example.org.</Name><Type>TXT</Type>
  <TTL>300</TTL><ResourceRecords><ResourceRecord><Value>&quot;v=STSv1; id=1;&quot; &#34;x&lt;&#x41;</Value>
  </ResourceRecord></ResourceRecords></ResourceRecordSet></ResourceRecordSets>
  <IsTruncated>false</IsTruncated><MaxItems/></ListResourceRecordSetsResponse>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "ListResourceRecordSetsResponse");
        let set = root
            .child("ResourceRecordSets")
            .and_then(|s| s.child("ResourceRecordSet"))
            .unwrap();
        assert_eq!(set.text_at(&["TTL"]), Some("300"));
        assert_eq!(
            set.text_at(&["ResourceRecords", "ResourceRecord", "Value"]),
            Some("\"v=STSv1; id=1;\" \"x<A")
        );
        assert_eq!(root.text_at(&["MaxItems"]), Some(""));
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("").is_err());
        assert_eq!(escape("a<&\"b"), "a&lt;&amp;&quot;b");
    }
}
