# frozen_string_literal: true

# The start-up workload with the pure-Ruby pool: 10 empty items on 2
# processes (see bench/startup.rb).
require_relative '../ruby_pool'
made = 0
RubyPool.new(2) { |item| item }.run(-> { made < 10 ? made += 1 : nil })
