# frozen_string_literal: true

require 'open3'
require 'securerandom'
require 'tmpdir'
require 'timeout'

ROOT = File.expand_path('..', __dir__)
$LOAD_PATH.unshift(File.join(ROOT, 'lib'))

Dir[File.join(__dir__, 'support', '*.rb')].each { |file| require file }

RSpec.configure do |config|
  config.include ProcessHelpers
  config.include ForkWrapper
  config.disable_monkey_patching!
  # A failure shows the whole output it was about, not the first 200 bytes.
  config.expect_with(:rspec) { |expectations| expectations.max_formatted_output_length = nil }
  config.order = :defined

  # Every process a spec starts carries this spec's tag in its environment,
  # workers included; none may outlive its example.
  config.around do |example|
    ProcessHelpers.with_spec_tag { example.run }
  end

  config.after do
    leftovers = ProcessHelpers.live_tagged_processes(ProcessHelpers.current_tag)
    unless leftovers.empty?
      leftovers.each { |pid| Process.kill(:KILL, pid) rescue nil } # rubocop:disable Style/RescueModifier
      raise "processes left running: #{leftovers.join(', ')}"
    end
  end
end
