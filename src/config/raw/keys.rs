//! One list of keys per section: [`keys!`] declares a section's keys as an enum, from which
//! come both the parser's dispatch (an exhaustive `match` on the variant) and the "expected
//! one of" list of its error message, in the order written.

/// `keys! { enum Name { Variant = "key", … } }`: the enum, `Name::of(key)` (the variant of a
/// written key, `None` for an unknown one), `Name::ALL` (every key, in order) and
/// `variant.name()`.
macro_rules! keys {
    ($(#[$meta:meta])* enum $name:ident { $($variant:ident = $key:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($variant),+
        }

        #[allow(dead_code)] // not every section needs every way in
        impl $name {
            /// Every key, in the order the "expected one of" message lists them.
            pub(crate) const ALL: &'static [&'static str] = &[$($key),+];

            pub(crate) fn of(key: &str) -> Option<Self> {
                match key {
                    $($key => Some(Self::$variant),)+
                    _ => None,
                }
            }

            pub(crate) const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $key,)+
                }
            }
        }
    };
}

pub(crate) use keys;
