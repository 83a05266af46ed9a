# frozen_string_literal: true

# Divvy.map over a list: fetches the length of each word's SHA-256 "work"
# in parallel and gets the results back in input order. Run it with ruby:
#
#   ruby -Ilib examples/map.rb [WORDS...]
require 'divvy'
require 'digest'

words = ARGV.empty? ? %w[divvy forks workers and brings results home] : ARGV
rounds = 20_000 # pretend each word needs real work

digests = Divvy.map(words, workers: 4, retries: 1) do |word|
  rounds.times.reduce(word) { |text, _| Digest::SHA256.hexdigest(text) } # runs in a worker
end

words.zip(digests).each { |word, digest| puts "#{word.ljust(10)} #{digest}" }
