//! Section 05, image generation: GANs, VAEs, diffusion, CLIP and DALL-E.
//!
//! | module | milestone idea |
//! | --- | --- |
//! | [`metrics`] | the yardstick every notebook of the section uses: Fréchet distance of classifier features, inception score, class histogram, precision and recall |

pub mod metrics;
