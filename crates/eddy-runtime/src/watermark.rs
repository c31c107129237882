//! Combining the watermarks of several input channels (Flink's `StatusWatermarkValve`).
//!
//! A task's event time is the minimum watermark over its input channels, leaving out channels
//! that are idle. It only moves forward. A channel that becomes active again rejoins the minimum
//! once its watermark has caught up with the task's. A finished channel no longer holds the
//! minimum back.

/// What the valve tells the task to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValveOutput {
    Watermark(i64),
    Idle(bool),
}

#[derive(Debug, Clone)]
struct ChannelState {
    watermark: i64,
    idle: bool,
    /// Counts in the minimum (its watermark is not behind the output watermark).
    aligned: bool,
    finished: bool,
}

#[derive(Debug, Clone)]
pub struct WatermarkValve {
    channels: Vec<ChannelState>,
    last_output: i64,
    idle: bool,
}

impl WatermarkValve {
    pub fn new(num_channels: usize) -> Self {
        let ch = ChannelState { watermark: i64::MIN, idle: false, aligned: true, finished: false };
        WatermarkValve { channels: vec![ch; num_channels], last_output: i64::MIN, idle: false }
    }

    /// The task's current event time.
    pub fn current_watermark(&self) -> i64 {
        self.last_output
    }

    pub fn input_watermark(&mut self, channel: usize, watermark: i64) -> Option<ValveOutput> {
        let last = self.last_output;
        let ch = &mut self.channels[channel];
        if ch.idle || ch.finished || watermark <= ch.watermark {
            return None;
        }
        ch.watermark = watermark;
        if watermark >= last {
            ch.aligned = true;
        }
        self.advance()
    }

    pub fn input_idle(&mut self, channel: usize, idle: bool) -> Option<ValveOutput> {
        let last = self.last_output;
        let ch = &mut self.channels[channel];
        if ch.finished || ch.idle == idle {
            return None;
        }
        ch.idle = idle;
        if idle {
            ch.aligned = false;
            if self.channels.iter().all(|c| c.idle || c.finished) {
                self.idle = true;
                return Some(ValveOutput::Idle(true));
            }
            self.advance()
        } else {
            if ch.watermark >= last {
                ch.aligned = true;
            }
            if self.idle {
                self.idle = false;
                return Some(ValveOutput::Idle(false));
            }
            None
        }
    }

    /// The channel delivered end of input: it stops holding the minimum back.
    pub fn channel_finished(&mut self, channel: usize) -> Option<ValveOutput> {
        let ch = &mut self.channels[channel];
        ch.finished = true;
        ch.aligned = false;
        if self.channels.iter().all(|c| c.finished) && self.last_output < i64::MAX {
            // Nothing can follow on any channel: event time is complete.
            self.last_output = i64::MAX;
            return Some(ValveOutput::Watermark(i64::MAX));
        }
        self.advance()
    }

    fn advance(&mut self) -> Option<ValveOutput> {
        let min = self
            .channels
            .iter()
            .filter(|c| c.aligned && !c.idle && !c.finished)
            .map(|c| c.watermark)
            .min()?;
        if min > self.last_output {
            self.last_output = min;
            Some(ValveOutput::Watermark(min))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ValveOutput::*;

    #[test]
    fn output_is_minimum_over_channels_and_never_goes_back() {
        let mut v = WatermarkValve::new(2);
        assert_eq!(v.input_watermark(0, 10), None);
        assert_eq!(v.input_watermark(1, 5), Some(Watermark(5)));
        assert_eq!(v.input_watermark(1, 20), Some(Watermark(10)));
        assert_eq!(v.input_watermark(0, 8), None);
        assert_eq!(v.current_watermark(), 10);
    }

    #[test]
    fn idle_channels_do_not_hold_back_and_rejoin_when_caught_up() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, 100);
        assert_eq!(v.input_idle(1, true), Some(Watermark(100)));
        assert_eq!(v.input_idle(0, true), Some(Idle(true)));
        assert_eq!(v.input_idle(1, false), Some(Idle(false)));
        // Channel 1 is behind the output: it does not pull the watermark back.
        assert_eq!(v.input_watermark(1, 50), None);
        assert_eq!(v.input_idle(0, false), None);
        // Channel 1 is still behind, so channel 0 alone moves the output.
        assert_eq!(v.input_watermark(0, 200), Some(Watermark(200)));
        assert_eq!(v.input_watermark(1, 150), None);
        // Once caught up, channel 1 rejoins the minimum and holds it back again.
        assert_eq!(v.input_watermark(1, 250), None);
        assert_eq!(v.input_watermark(0, 300), Some(Watermark(250)));
    }

    #[test]
    fn finished_channels_release_the_minimum() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, 7);
        assert_eq!(v.channel_finished(1), Some(Watermark(7)));
    }

    #[test]
    fn when_every_channel_has_finished_event_time_is_complete() {
        let mut v = WatermarkValve::new(2);
        v.input_watermark(0, 7);
        v.input_idle(1, true);
        v.channel_finished(1);
        assert_eq!(v.channel_finished(0), Some(Watermark(i64::MAX)));
        assert_eq!(v.current_watermark(), i64::MAX);
    }
}
