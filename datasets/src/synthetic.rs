//! `synthetic-digits`: 28x28 grey glyphs of the ten digits, drawn as strokes with a random
//! shift, scale, slant, stroke width and noise. Sample `i` depends only on `i`, so any range
//! is generated without the rest and the dataset is the same on every machine.
use crate::{IMAGE_PIXELS, IMAGE_SIDE, Samples};
use cairn_domain::SampleRange;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How many samples the dataset has, like the MNIST test split.
pub const LEN: usize = 10_000;
const DATASET_SEED: u64 = 0x00ca_1e5e_ed00;

type Stroke = ((f32, f32), (f32, f32));

// Seven-segment strokes in a unit box (x right, y down), plus the diagonals of 1 and 7.
const TOP: Stroke = ((0.2, 0.1), (0.8, 0.1));
const UPPER_RIGHT: Stroke = ((0.8, 0.1), (0.8, 0.5));
const LOWER_RIGHT: Stroke = ((0.8, 0.5), (0.8, 0.9));
const BOTTOM: Stroke = ((0.2, 0.9), (0.8, 0.9));
const LOWER_LEFT: Stroke = ((0.2, 0.5), (0.2, 0.9));
const UPPER_LEFT: Stroke = ((0.2, 0.1), (0.2, 0.5));
const MIDDLE: Stroke = ((0.2, 0.5), (0.8, 0.5));
const STEM: Stroke = ((0.5, 0.1), (0.5, 0.9));
const FLAG: Stroke = ((0.32, 0.28), (0.5, 0.1));
const SLASH: Stroke = ((0.8, 0.1), (0.42, 0.9));

const GLYPHS: [&[Stroke]; 10] = [
    &[TOP, UPPER_RIGHT, LOWER_RIGHT, BOTTOM, LOWER_LEFT, UPPER_LEFT],
    &[STEM, FLAG],
    &[TOP, UPPER_RIGHT, MIDDLE, LOWER_LEFT, BOTTOM],
    &[TOP, UPPER_RIGHT, MIDDLE, LOWER_RIGHT, BOTTOM],
    &[UPPER_LEFT, MIDDLE, UPPER_RIGHT, LOWER_RIGHT],
    &[TOP, UPPER_LEFT, MIDDLE, LOWER_RIGHT, BOTTOM],
    &[TOP, UPPER_LEFT, MIDDLE, LOWER_LEFT, BOTTOM, LOWER_RIGHT],
    &[TOP, SLASH],
    &[TOP, UPPER_RIGHT, LOWER_RIGHT, BOTTOM, LOWER_LEFT, UPPER_LEFT, MIDDLE],
    &[TOP, UPPER_RIGHT, LOWER_RIGHT, BOTTOM, UPPER_LEFT, MIDDLE],
];

/// Samples `range` of the dataset. The range must lie within `0..LEN`.
pub fn samples(range: SampleRange) -> Samples {
    let mut images = Vec::with_capacity(range.len() * IMAGE_PIXELS);
    let mut labels = Vec::with_capacity(range.len());
    for index in range.start..range.end {
        let (image, label) = sample(index);
        images.extend_from_slice(&image);
        labels.push(label);
    }
    Samples { images, labels }
}

/// Sample `index`: its image and its label.
pub fn sample(index: usize) -> ([u8; IMAGE_PIXELS], u8) {
    let mut rng = ChaCha8Rng::seed_from_u64(DATASET_SEED);
    rng.set_stream(index as u64);
    let label = rng.random_range(0..10u8);
    let size = rng.random_range(14.0..21.0f32);
    let aspect = rng.random_range(0.75..1.1f32);
    let slant = rng.random_range(-0.25..0.25f32);
    let center = (14.0 + rng.random_range(-3.0..3.0f32), 14.0 + rng.random_range(-3.0..3.0f32));
    let half_width = rng.random_range(0.6..1.6f32);
    // Glyph box coordinates to pixels: scale, slant (shear by height) and shift.
    let to_pixels = |(x, y): (f32, f32)| {
        let (gx, gy) = ((x - 0.5) * size * aspect, (y - 0.5) * size);
        (center.0 + gx - slant * gy, center.1 + gy)
    };
    let strokes: Vec<Stroke> = GLYPHS[label as usize].iter().map(|&(a, b)| (to_pixels(a), to_pixels(b))).collect();

    let mut image = [0u8; IMAGE_PIXELS];
    for (pixel, value) in image.iter_mut().enumerate() {
        let point = ((pixel % IMAGE_SIDE) as f32 + 0.5, (pixel / IMAGE_SIDE) as f32 + 0.5);
        let distance = strokes.iter().map(|&stroke| distance_to_stroke(point, stroke)).fold(f32::MAX, f32::min);
        let ink = (half_width + 0.5 - distance).clamp(0.0, 1.0);
        let noise = rng.random_range(-0.15..0.15f32);
        *value = ((ink + noise).clamp(0.0, 1.0) * 255.0).round() as u8;
    }
    (image, label)
}

fn distance_to_stroke((px, py): (f32, f32), ((ax, ay), (bx, by)): Stroke) -> f32 {
    let (dx, dy) = (bx - ax, by - ay);
    let length_sq = dx * dx + dy * dy;
    let t = if length_sq == 0.0 { 0.0 } else { (((px - ax) * dx + (py - ay) * dy) / length_sq).clamp(0.0, 1.0) };
    let (cx, cy) = (ax + t * dx - px, ay + t * dy - py);
    (cx * cx + cy * cy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_index_gives_the_same_sample_in_any_range() {
        let whole = samples(SampleRange::new(0, 20));
        let tail = samples(SampleRange::new(10, 20));
        assert_eq!(&whole.images[10 * IMAGE_PIXELS..], &tail.images[..]);
        assert_eq!(&whole.labels[10..], &tail.labels[..]);
        assert_eq!(samples(SampleRange::new(0, 20)), whole);
    }

    #[test]
    fn every_class_appears_and_images_have_ink() {
        let data = samples(SampleRange::new(0, 500));
        for class in 0..10u8 {
            let count = data.labels.iter().filter(|&&label| label == class).count();
            assert!(count > 20, "class {class} appears {count} times in 500");
        }
        for index in 0..data.len() {
            let inked = data.image(index).iter().filter(|&&p| p > 128).count();
            assert!((20..500).contains(&inked), "sample {index} has {inked} inked pixels");
        }
    }

    #[test]
    fn samples_of_one_class_differ() {
        let data = samples(SampleRange::new(0, 200));
        let ones: Vec<usize> = (0..data.len()).filter(|&i| data.labels[i] == 1).take(2).collect();
        assert_ne!(data.image(ones[0]), data.image(ones[1]));
    }
}
