//! A cheap, iterative pre-scan of AMQP 1.0 encoded values (spec part 1, §1.6 "types").
//!
//! serde_amqp decodes by recursion with no nesting limit, so a peer that sends a few
//! thousand nested described values or lists can overflow a worker's stack and abort
//! the whole broker. Every performative and message section is walked here first,
//! with an explicit stack bounded by [`Limits::max_depth`], before serde_amqp sees it.
//! The walk also yields the encoded length of a value, which is how a frame body is
//! split into the performative and a transfer's payload.

/// Bounds on what [`scan_value`] accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How many compound, array or described values may enclose one another (at most 127,
    /// whatever larger value is given).
    pub max_depth: usize,
    /// How many values (at any depth, array elements included) one scan may visit.
    pub max_elements: usize,
}

impl Limits {
    /// Generous for every performative the spec defines (the deepest legitimate one, an
    /// attach with filters and a described outcome, nests well under 10), and small
    /// enough that serde_amqp's recursion stays far from the end of a worker's stack.
    pub const PERFORMATIVE: Limits = Limits {
        max_depth: 32,
        max_elements: 65_536,
    };
}

/// Why a byte sequence is not one acceptable AMQP value. Every variant means the peer
/// sent something undecodable (`amqp:decode-error`), or something larger than allowed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
// The variants' fields are what their #[error] text says; documenting each again adds nothing.
#[allow(missing_docs)]
pub enum ScanError {
    /// The buffer ends inside the value.
    #[error("encoded value truncated: {needed} more bytes needed at offset {offset}, but the buffer ends at {len}")]
    Truncated {
        offset: usize,
        needed: usize,
        len: usize,
    },
    /// The byte at `offset` is not an AMQP format code (nor 0x00, the described marker).
    #[error("invalid AMQP format code 0x{byte:02x} at offset {offset}")]
    InvalidConstructor { byte: u8, offset: usize },
    /// More than [`Limits::max_depth`] compound, array or described values nest.
    #[error("value nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// More than [`Limits::max_elements`] values in total.
    #[error("value has more than {limit} elements")]
    TooManyElements { limit: usize },
    /// A list, map or array whose declared size disagrees with its contents: the elements
    /// end before or run past the declared size, or the declared count cannot fit in it.
    #[error("compound value at offset {offset} declares {declared} bytes of content, but its elements take {actual}")]
    SizeMismatch {
        offset: usize,
        declared: usize,
        actual: usize,
    },
    /// A map must hold key/value pairs, so its element count is even.
    #[error("map at offset {offset} has an odd element count ({count})")]
    OddMapCount { offset: usize, count: u32 },
}

/// Walk exactly one encoded value at the start of `buf` and return its encoded length in bytes.
///
/// Never recurses; never reads past `buf`; runs in time linear in the returned length (arrays
/// of fixed-width elements are skipped in one step); allocates only for values nested more
/// than 4 deep. Bytes after the value are ignored. A successful scan guarantees the value's
/// structure (constructors, sizes, counts) is well formed within the limits; it does not
/// check the contents of primitives (UTF-8 of strings, which descriptors are known).
pub fn scan_value(buf: &[u8], limits: Limits) -> Result<usize, ScanError> {
    // A described primitive is one level deep and three values (descriptor, value, whole).
    if limits.max_depth >= 1 && limits.max_elements >= 3 {
        if let Some(len) = described_primitive(buf) {
            return Ok(len);
        }
    }
    Scanner {
        buf,
        limits,
        pos: 0,
        elements: 0,
        stack: Stack::new(),
    }
    .run()
}

/// The length of `0x00 0x53 <code> <primitive>` — a value described by a small ulong whose
/// value is a scalar, string or binary: every data section and most message bodies. None
/// when `buf` holds anything else, or is cut short (the full scan then says what is wrong).
fn described_primitive(buf: &[u8]) -> Option<usize> {
    let [0x00, 0x53, _, code, rest @ ..] = buf else {
        return None;
    };
    let len = match layout(*code)? {
        Layout::Fixed(width) => width,
        Layout::Variable(1) => 1 + usize::from(*rest.first()?),
        Layout::Variable(_) => {
            let size = rest.get(..4)?;
            4 + u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize
        }
        _ => return None,
    };
    (len <= rest.len()).then_some(4 + len)
}

/// How the bytes after a format code are laid out; widths are of the size/count fields.
enum Layout {
    /// Fixed width (0 for the codes that carry their value in the constructor).
    Fixed(usize),
    /// Binary, string or symbol.
    Variable(usize),
    List(usize),
    Map(usize),
    Array(usize),
}

/// The layout of a format code (spec part 1, §1.6), or None if the spec defines no such code.
fn layout(code: u8) -> Option<Layout> {
    Some(match code {
        0x40..=0x45 => Layout::Fixed(0),
        0x50..=0x56 => Layout::Fixed(1),
        0x60 | 0x61 => Layout::Fixed(2),
        0x70..=0x74 => Layout::Fixed(4),
        0x80..=0x84 => Layout::Fixed(8),
        0x94 | 0x98 => Layout::Fixed(16),
        0xa0 | 0xa1 | 0xa3 => Layout::Variable(1),
        0xb0 | 0xb1 | 0xb3 => Layout::Variable(4),
        0xc0 => Layout::List(1),
        0xc1 => Layout::Map(1),
        0xd0 => Layout::List(4),
        0xd1 => Layout::Map(4),
        0xe0 => Layout::Array(1),
        0xf0 => Layout::Array(4),
        _ => return None,
    })
}

/// The fewest bytes one array element of this layout occupies (it has no constructor of
/// its own); used to reject absurd counts before looping.
fn min_array_element(layout: &Layout) -> usize {
    match *layout {
        Layout::Fixed(width) | Layout::Variable(width) => width,
        Layout::List(width) | Layout::Map(width) | Layout::Array(width) => 2 * width,
    }
}

/// Where a sized compound's content lies, for bounds checks and error reports.
#[derive(Clone, Copy)]
struct Extent {
    /// Offset of the size field, reported in errors.
    offset: usize,
    /// First byte after the size field.
    content_start: usize,
    /// One past the last byte the size field claims: nothing inside may reach beyond it.
    end: usize,
}

/// What the values of an open frame are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Complete values, constructor included: list or map items, or a described value's
    /// descriptor and value.
    Values,
    /// An array's element constructor is next (after any descriptors already walked);
    /// `remaining` is the array's count.
    ArrayConstructor,
    /// Array elements of this non-fixed-width format code, without constructors.
    ArrayElements(u8),
}

/// One open value on the explicit stack.
#[derive(Clone, Copy)]
struct Frame {
    kind: Kind,
    remaining: u64,
    /// The innermost sized compound; a described value has no size of its own.
    extent: Extent,
    /// True if the frame is that compound, whose size its contents must fill exactly.
    sized: bool,
}

struct Scanner<'a> {
    buf: &'a [u8],
    limits: Limits,
    pos: usize,
    elements: usize,
    stack: Stack,
}

/// Deepest nesting any [`Limits`] can allow.
const MAX_STACK: usize = 128;
/// Frames kept inline; deeper values (rare: no performative nests this far) spill to the heap.
const INLINE_FRAMES: usize = 4;

/// The explicit stack of open values: a few frames inline, so the common scan allocates
/// nothing (it runs for every frame and every message section).
struct Stack {
    inline: [Frame; INLINE_FRAMES],
    spill: Vec<Frame>,
    len: usize,
}

const EMPTY_FRAME: Frame = Frame {
    kind: Kind::Values,
    remaining: 0,
    extent: Extent {
        offset: 0,
        content_start: 0,
        end: 0,
    },
    sized: false,
};

impl Stack {
    fn new() -> Stack {
        Stack {
            inline: [EMPTY_FRAME; INLINE_FRAMES],
            spill: Vec::new(),
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, frame: Frame) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = frame,
            None => self.spill.push(frame),
        }
        self.len += 1;
    }

    fn pop(&mut self) {
        if self.len > INLINE_FRAMES {
            self.spill.pop();
        }
        self.len = self.len.saturating_sub(1);
    }

    fn last(&self) -> Option<&Frame> {
        let i = self.len.checked_sub(1)?;
        match self.inline.get(i) {
            Some(frame) => Some(frame),
            None => self.spill.last(),
        }
    }

    fn last_mut(&mut self) -> Option<&mut Frame> {
        let i = self.len.checked_sub(1)?;
        match self.inline.get_mut(i) {
            Some(frame) => Some(frame),
            None => self.spill.last_mut(),
        }
    }
}

impl Scanner<'_> {
    fn run(mut self) -> Result<usize, ScanError> {
        // The root frame holds the one value to walk; it is not a level of nesting.
        let whole = Extent {
            offset: 0,
            content_start: 0,
            end: self.buf.len(),
        };
        self.stack.push(Frame {
            kind: Kind::Values,
            remaining: 1,
            extent: whole,
            sized: false,
        });
        while let Some(top) = self.stack.last_mut() {
            let (kind, extent) = (top.kind, top.extent);
            if kind == Kind::ArrayConstructor {
                let count = top.remaining;
                self.array_constructor(count, extent)?;
                continue;
            }
            if top.remaining == 0 {
                let sized = top.sized;
                self.stack.pop();
                if sized {
                    self.check_end(extent)?;
                }
                continue;
            }
            top.remaining -= 1;
            self.count_element()?;
            match kind {
                Kind::ArrayElements(code) => self.body(code, extent)?,
                _ => self.value(extent)?,
            }
        }
        Ok(self.pos)
    }

    fn check_end(&self, extent: Extent) -> Result<(), ScanError> {
        if self.pos == extent.end {
            return Ok(());
        }
        Err(ScanError::SizeMismatch {
            offset: extent.offset,
            declared: extent.end - extent.content_start,
            actual: self.pos.saturating_sub(extent.content_start),
        })
    }

    /// Reads a constructor: `0x00` opens a described value, anything else is a format code.
    fn value(&mut self, within: Extent) -> Result<(), ScanError> {
        let code = self.byte(within.end)?;
        if code == 0x00 {
            return self.open(Kind::Values, 2, within, false);
        }
        self.body(code, within)
    }

    /// Walks (or opens a frame for) the bytes that follow format code `code`.
    fn body(&mut self, code: u8, within: Extent) -> Result<(), ScanError> {
        let limit = within.end;
        let (count, extent, kind) = match layout(code) {
            None => return Err(self.invalid(code)),
            Some(Layout::Fixed(width)) => return self.skip(width, limit),
            Some(Layout::Variable(width)) => {
                let size = self.size_field(width, limit)?;
                return self.skip(size, limit);
            }
            Some(Layout::List(width)) => {
                let (count, extent) = self.sized_header(width, limit)?;
                (count, extent, Kind::Values)
            }
            Some(Layout::Map(width)) => {
                let (count, extent) = self.sized_header(width, limit)?;
                if count % 2 == 1 {
                    let offset = extent.offset;
                    let count = u32::try_from(count).unwrap_or(u32::MAX);
                    return Err(ScanError::OddMapCount { offset, count });
                }
                (count, extent, Kind::Values)
            }
            Some(Layout::Array(width)) => {
                let (count, extent) = self.sized_header(width, limit)?;
                (count, extent, Kind::ArrayConstructor)
            }
        };
        if kind == Kind::Values {
            // Every item has at least its constructor byte.
            self.check_count_fits(count, 1, extent)?;
        }
        // Reject a huge declared count now, before any loop over it.
        if (self.elements as u64).saturating_add(count) > self.limits.max_elements as u64 {
            return Err(self.too_many());
        }
        self.open(kind, count, extent, true)
    }

    /// Reads an array's element constructor. A described constructor (`0x00 descriptor
    /// code`) first walks the descriptor as a value, then comes back here for the code.
    fn array_constructor(&mut self, count: u64, extent: Extent) -> Result<(), ScanError> {
        if count == 0 && self.pos == extent.end {
            // Tolerate an empty array encoded without an element constructor.
            self.stack.pop();
            return Ok(());
        }
        let code = self.byte(extent.end)?;
        if code == 0x00 {
            return self.open(Kind::Values, 1, extent, false);
        }
        let layout = layout(code).ok_or_else(|| self.invalid(code))?;
        self.check_count_fits(count, min_array_element(&layout), extent)?;
        self.stack.pop();
        let Layout::Fixed(width) = layout else {
            return self.open(Kind::ArrayElements(code), count, extent, true);
        };
        // Fixed-width elements need no walking: skip them all at once, so that an array
        // of a billion zero-width elements costs nothing.
        self.elements = self.elements.saturating_add(count as usize);
        if self.elements > self.limits.max_elements {
            return Err(self.too_many());
        }
        self.skip((count as usize).saturating_mul(width), extent.end)?;
        self.check_end(extent)
    }

    /// Reads the size and count fields of a list, map or array, checking the size against
    /// the enclosing limit before anything relies on it.
    fn sized_header(&mut self, width: usize, limit: usize) -> Result<(u64, Extent), ScanError> {
        let offset = self.pos;
        let size = self.size_field(width, limit)?;
        let content_start = self.pos;
        let end = self.bounded_end(content_start, size, limit)?;
        if size < width {
            let actual = width;
            return Err(ScanError::SizeMismatch {
                offset,
                declared: size,
                actual,
            });
        }
        let count = self.uint_field(width, end)?;
        Ok((
            count,
            Extent {
                offset,
                content_start,
                end,
            },
        ))
    }

    fn check_count_fits(
        &self,
        count: u64,
        min_each: usize,
        extent: Extent,
    ) -> Result<(), ScanError> {
        let needed = count.saturating_mul(min_each as u64);
        if needed <= (extent.end - self.pos) as u64 {
            return Ok(());
        }
        let before = self.pos - extent.content_start;
        Err(ScanError::SizeMismatch {
            offset: extent.offset,
            declared: extent.end - extent.content_start,
            actual: usize::try_from(needed)
                .unwrap_or(usize::MAX)
                .saturating_add(before),
        })
    }

    fn count_element(&mut self) -> Result<(), ScanError> {
        self.elements = self.elements.saturating_add(1);
        if self.elements > self.limits.max_elements {
            return Err(self.too_many());
        }
        Ok(())
    }

    fn too_many(&self) -> ScanError {
        ScanError::TooManyElements {
            limit: self.limits.max_elements,
        }
    }

    fn invalid(&self, byte: u8) -> ScanError {
        let offset = self.pos.saturating_sub(1);
        ScanError::InvalidConstructor { byte, offset }
    }

    fn open(
        &mut self,
        kind: Kind,
        remaining: u64,
        extent: Extent,
        sized: bool,
    ) -> Result<(), ScanError> {
        // The root frame is not a level of nesting.
        let limit = self.limits.max_depth.min(MAX_STACK - 1);
        if self.stack.len() > limit {
            return Err(ScanError::TooDeep { limit });
        }
        self.stack.push(Frame {
            kind,
            remaining,
            extent,
            sized,
        });
        Ok(())
    }

    /// The end of `size` bytes starting at `start`, if they fit before `limit`.
    fn bounded_end(&self, start: usize, size: usize, limit: usize) -> Result<usize, ScanError> {
        match start.checked_add(size) {
            Some(end) if end <= limit => Ok(end),
            _ => Err(self.overrun(start, size, limit)),
        }
    }

    /// The error for `needed` bytes at `start` not fitting before `limit`: truncation if
    /// the limit is the buffer's end, otherwise an overrun of the enclosing compound.
    fn overrun(&self, start: usize, needed: usize, limit: usize) -> ScanError {
        let len = self.buf.len();
        if limit == len {
            let needed = needed - limit.saturating_sub(start).min(needed);
            return ScanError::Truncated {
                offset: start,
                needed,
                len,
            };
        }
        let content_start = self.stack.last().map_or(0, |top| top.extent.content_start);
        ScanError::SizeMismatch {
            offset: self.stack.last().map_or(0, |top| top.extent.offset),
            declared: limit.saturating_sub(content_start),
            actual: start.saturating_add(needed).saturating_sub(content_start),
        }
    }

    fn skip(&mut self, len: usize, limit: usize) -> Result<(), ScanError> {
        self.pos = self.bounded_end(self.pos, len, limit)?;
        Ok(())
    }

    fn byte(&mut self, limit: usize) -> Result<u8, ScanError> {
        Ok(self.uint_field(1, limit)? as u8)
    }

    /// Reads a big-endian unsigned field of 1 or 4 bytes.
    fn uint_field(&mut self, width: usize, limit: usize) -> Result<u64, ScanError> {
        let start = self.pos;
        self.skip(width, limit)?;
        let field = self.buf.get(start..self.pos).unwrap_or_default();
        Ok(field.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn size_field(&mut self, width: usize, limit: usize) -> Result<usize, ScanError> {
        let size = self.uint_field(width, limit)?;
        Ok(usize::try_from(size).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests;
