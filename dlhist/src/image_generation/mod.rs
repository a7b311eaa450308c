//! Section 05, image generation: GANs, VAEs, diffusion, CLIP and DALL-E.
//!
//! | module | milestone idea |
//! | --- | --- |
//! | [`metrics`] | the yardstick every notebook of the section uses: Fréchet distance of classifier features, inception score, class histogram, precision and recall |
//! | [`yardstick`] | the Fashion-MNIST classifier those measures read images through, stored trained in `assets/models/` |

pub mod metrics;
pub mod yardstick;
