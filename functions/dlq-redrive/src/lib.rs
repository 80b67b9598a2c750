//! Moves chosen dead-lettered deliveries back to the DeliveryQueue.
