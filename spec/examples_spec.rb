# frozen_string_literal: true

require 'digest'

RSpec.describe 'the examples' do
  it 'hash_files.rb prints a sorted manifest gathered in the master' do
    Dir.mktmpdir do |dir|
      files = { 'a.txt' => 'alpha', 'sub/b.txt' => 'beta' * 1000, 'sub/deeper/c.bin' => "\x00\x01".b }
      files.each do |name, content|
        FileUtils.mkdir_p(File.dirname(File.join(dir, name)))
        File.binwrite(File.join(dir, name), content)
      end
      result = divvy('-n', 2, File.join(ROOT, 'examples', 'hash_files.rb'), dir)
      expect(result.status).to be_success, result.stderr
      expected = files.sort.map do |name, content|
        "#{Digest::SHA256.hexdigest(content)}  #{content.bytesize.to_s.rjust(10)}  #{File.join(dir, name)}\n"
      end
      expect(result.stdout).to eq(expected.join)
    end
  end

  it 'map.rb prints each word with its result, in input order' do
    result = run_command(['ruby', File.join(ROOT, 'examples', 'map.rb'), 'one', 'two', 'three'])
    expect(result.status).to be_success, result.stderr
    expect(result.stdout.lines.map { |line| line.split.first }).to eq(%w[one two three])
    expect(result.stdout.lines).to all(match(/\A\w+\s+\h{64}\n\z/))
  end
end
