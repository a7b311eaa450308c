//! Section 05, image generation: GANs, VAEs, diffusion, CLIP and DALL-E.
//!
//! | module | milestone idea |
//! | --- | --- |
//! | [`metrics`] | the yardstick every notebook of the section uses: Fréchet distance of classifier features, inception score, class histogram, precision and recall |
//! | [`gan`] | Goodfellow et al. 2014: a generator and a discriminator in a two-player game, the minimax and the non-saturating generator loss |
//! | [`yardstick`] | the Fashion-MNIST classifier those measures read images through, stored trained in `assets/models/` |

pub mod gan;
pub mod metrics;
pub mod yardstick;
