//! Typed label values and the families keyed by them: every value of a
//! label enum is created at 0 when its family is registered, so
//! dashboards and alerts see 0 rather than an absent series, and no list
//! of label values is kept by hand.

use std::marker::PhantomData;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// A closed set of label values.
pub trait Label: Copy + 'static {
    /// Every value.
    const ALL: &'static [Self];
    /// The label value as exported.
    fn as_str(self) -> &'static str;
}

/// Declares a label enum: variants, their exported values, [`Label`].
macro_rules! labels {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// The label value as exported.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $value, )+
                }
            }
        }

        impl $crate::metrics::family::Label for $name {
            const ALL: &'static [Self] = &[$( Self::$variant, )+];
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }
    };
}
pub(crate) use labels;

/// A counter family with one label, of type `L`.
pub struct Counters<L> {
    vec: IntCounterVec,
    label: PhantomData<L>,
}

impl<L: Label> Counters<L> {
    /// Registers `name` into `registry` with every value of `L` at 0.
    pub fn register(
        registry: &Registry,
        name: &str,
        help: &str,
        label: &str,
    ) -> prometheus::Result<Self> {
        let vec = IntCounterVec::new(Opts::new(name, help), &[label])?;
        for value in L::ALL {
            vec.with_label_values(&[value.as_str()]);
        }
        registry.register(Box::new(vec.clone()))?;
        Ok(Self {
            vec,
            label: PhantomData,
        })
    }

    /// Counts one `value`.
    pub fn inc(&self, value: L) {
        self.vec.with_label_values(&[value.as_str()]).inc();
    }

    /// Removes the series created at 0: for a family that cannot count
    /// anything in the running mode (a series still appears if it does).
    pub fn clear(&self) {
        self.vec.reset();
    }
}

/// A histogram family with one label, of type `L`.
pub struct Histograms<L> {
    vec: HistogramVec,
    label: PhantomData<L>,
}

impl<L: Label> Histograms<L> {
    /// Registers `name` into `registry` with every value of `L`.
    pub fn register(
        registry: &Registry,
        opts: HistogramOpts,
        label: &str,
    ) -> prometheus::Result<Self> {
        let vec = HistogramVec::new(opts, &[label])?;
        for value in L::ALL {
            vec.with_label_values(&[value.as_str()]);
        }
        registry.register(Box::new(vec.clone()))?;
        Ok(Self {
            vec,
            label: PhantomData,
        })
    }

    /// Observes `seconds` for `value`.
    /// Removes the series created at 0 (see [`Counters::clear`]).
    pub fn clear(&self) {
        self.vec.reset();
    }

    /// Records `seconds` under the label `value`.
    pub fn observe(&self, value: L, seconds: f64) {
        self.vec
            .with_label_values(&[value.as_str()])
            .observe(seconds);
    }
}
